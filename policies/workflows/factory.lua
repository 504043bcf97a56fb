-- factory.lua -- Factory's task pipeline: a task is created, taken up, and
-- goes through nine stages, each retried with exponential backoff as many
-- times as Factory allows it (implement 5, unit-test 3, coverage 5, lint 3,
-- static 3, integration 3, security 2, review 3, accept 1), then passes
-- (and is integrated) or fails the pipeline. `stages` is expanded by the
-- loader (see workflows/loopforge.lua's header): 23 states, 39 edges.
--
-- Create a record in it with `loopforge create --ref TASK --workflow factory`;
-- a failed stage is moved to STAGE_failed by whoever saw it fail, and the
-- engine retries it after the backoff (loopforge serve, or `loopforge tick`).

return workflow {
  name = "factory",
  states = { "created", "in_progress", "passed_pipeline", "failed_pipeline", "integrated" },
  initial = "created",
  terminal = { "integrated", "failed_pipeline" },
  edges = {
    { "created",         "in_progress" },
    { "passed_pipeline", "integrated" },
  },
  stages = {
    from = "in_progress", pass = "passed_pipeline", fail = "failed_pipeline",
    backoff = { initial = "30s", factor = 2, max = "1h" },
    { "implement",   retries = 5 },
    { "unit_test",   retries = 3 },
    { "coverage",    retries = 5 },
    { "lint",        retries = 3 },
    { "static",      retries = 3 },
    { "integration", retries = 3 },
    { "security",    retries = 2 },
    { "review",      retries = 3 },
    { "accept",      retries = 1 },
  },
}
