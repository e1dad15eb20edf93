-- Argo CD health check for conveyor.dev/WorkflowRun: its phase. A cancelled run did what it
-- was told (spec.cancel) and shows as Suspended; one cancelled by nobody's request (a
-- deadline) shows as Degraded.
local hs = { status = "Progressing", message = "Waiting for the operator" }
if obj.status == nil or obj.status.phase == nil then
  return hs
end
local phase = obj.status.phase
local message = obj.status.message or ""
if obj.status.progress ~= nil then
  message = phase .. " " .. obj.status.progress .. (message ~= "" and (": " .. message) or "")
end
if phase == "Pending" or phase == "Running" then
  return { status = "Progressing", message = message }
end
if phase == "Succeeded" then
  return { status = "Healthy", message = message }
end
if phase == "Failed" then
  return { status = "Degraded", message = message }
end
if phase == "Cancelled" then
  if obj.spec ~= nil and obj.spec.cancel == true then
    return { status = "Suspended", message = message }
  end
  return { status = "Degraded", message = message }
end
return { status = "Unknown", message = "Unknown phase " .. phase }
