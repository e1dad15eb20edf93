"""Broken manifests and what the API server (kube-apiserver 1.36, `kubectl apply
--dry-run=server`) or the operator's `Ready=False, reason=InvalidSpec` condition says of each.

Shared by the unit tests of `conveyor lint` and the e2e test that asks the real API server.
Each case: (name, the spec's tasks as YAML lines, line of the problem, stage, message).
"""

HEAD = """apiVersion: conveyor.dev/v1alpha1
kind: Workflow
metadata:
  name: broken
spec:
  taskTypes:
  - name: work
    image: example.com/w:1
  tasks:
"""  # the first task starts on line 10

CASES = [
    ("duplicate-task-name", "- {name: a, type: work}\n- {name: a, type: work}\n", 9,
     "admission", "spec.tasks: Invalid value: spec.tasks: task names must be unique"),
    ("dangling-depends-on", "- {name: a, type: work, dependsOn: [ghost]}\n", 9, "admission",
     "spec.tasks: Invalid value: spec.tasks: every dependsOn must name a task of spec.tasks"),
    ("self-dependency", "- {name: a, type: work}\n- name: b\n  type: work\n  dependsOn: [b]\n",
     13, "admission",
     "spec.tasks[1].dependsOn: Invalid value: dependsOn: a task must not depend on itself"),
    ("unknown-task-type", "- {name: a, type: nope}\n", 9, "admission",
     "spec.tasks: Invalid value: spec.tasks: every type must name an entry of spec.taskTypes"),
    ("duplicate-dependency", "- {name: a, type: work}\n- name: b\n  type: work\n"
     "  dependsOn: [a, a]\n", 13, "admission", 'spec.tasks[1].dependsOn[1]: Duplicate value: "a"'),
    ("unknown-field", "- name: a\n  type: work\n  retries: 3\n", 12, "admission",
     'unknown field "spec.tasks[0].retries"'),
    ("wrong-type", "- name: a\n  type: work\n  timeoutSeconds: soon\n", 12, "admission",
     'spec.tasks[0].timeoutSeconds: Invalid value: "string": spec.tasks[0].timeoutSeconds in '
     'body must be of type integer: "string"'),
    ("bad-name", "- name: Not_A_Label\n  type: work\n", 10, "admission",
     "spec.tasks[0].name: Invalid value: \"Not_A_Label\": spec.tasks[0].name in body should "
     "match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'"),
    ("out-of-range", "- name: a\n  type: work\n  retry: {limit: 101}\n", 12, "admission",
     "spec.tasks[0].retry.limit: Invalid value: 101: spec.tasks[0].retry.limit in body should "
     "be less than or equal to 100"),
    ("bad-retry-policy", "- name: a\n  type: work\n  retry: {limit: 2, policy: OnError}\n", 12,
     "admission", 'spec.tasks[0].retry.policy: Unsupported value: "OnError": supported values: '
     '"Always", "OnFailure", "OnTimeout", "Never"'),
    ("cycle", "- {name: a, type: work, dependsOn: [c]}\n- {name: b, type: work, dependsOn: [a]}\n"
     "- {name: c, type: work, dependsOn: [b]}\n", 10, "operator",
     "spec.tasks[0].dependsOn: dependency cycle: a -> c -> b -> a (each depends on the next)"),
    ("bad-cel", "- name: a\n  type: work\n  when: \"${{ inputs.go && }}\"\n", 12, "operator",
     None),  # the CEL library's own syntax message; checked by prefix
]


def manifest(tasks: str) -> str:
    """The Workflow with `tasks` (written from column 0) under spec.tasks."""
    return HEAD + "".join(f"  {line}\n" for line in tasks.splitlines())
