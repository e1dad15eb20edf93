-- Argo CD health check for conveyor.dev/Workflow: the Ready condition, as the operator sets it
-- for the spec's current generation (docs/operator.md, "What it does").
local hs = { status = "Progressing", message = "Waiting for the operator" }
if obj.status == nil then
  return hs
end
if obj.status.observedGeneration ~= nil and obj.metadata.generation ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.message = "Waiting for the operator to observe generation " .. obj.metadata.generation
  return hs
end
for _, condition in ipairs(obj.status.conditions or {}) do
  if condition.type == "Ready" then
    local message = condition.message or condition.reason or ""
    if condition.status == "True" then
      return { status = "Healthy", message = message }
    end
    if condition.reason == "InvalidSpec" then
      return { status = "Degraded", message = message }
    end
    return { status = "Progressing", message = message }
  end
end
return hs
