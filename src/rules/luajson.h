/* luajson.h -- the one converter between JSON text and Lua values, for the
 * policy sandbox (src/rules) and loopforge.core (src/lua). See luajson.c
 * for the mapping. */
#ifndef LF_LUAJSON_H
#define LF_LUAJSON_H

#include <stdbool.h>
#include <stddef.h>

#include <lua.h>

#include "../core/buf.h"

/* Decodes JSON text s[0..len) and pushes its value. A null inside an
 * array becomes the light userdata `null` when that is not NULL (else
 * nil, leaving a hole); an object member set to null is left out.
 * Returns true, or false with nothing pushed and *errpos at the byte
 * where the text stopped being JSON. Raises only Lua's memory error. */
bool lf_json_decode(lua_State *L, const char *s, size_t len, const void *null,
                    size_t *errpos);

/* Appends the JSON text of the Lua value at idx to out. The light
 * userdata `null` (when not NULL) encodes as null. Returns true, or false
 * with "WHAT.path: problem" in err (what may be NULL) and out partly
 * written. Never raises, allocates nothing in Lua. */
bool lf_json_encode(lua_State *L, int idx, const void *null, const char *what,
                    lf_buf *out, char *err, size_t errlen);

#endif
