"""What Katib does with a trial, done here without Katib: take the trial template from an Experiment,
fill `${trialParameters.*}` from a point of the feasible space (and `${trialSpec.Name}`), and read the
primary container's stdout with the StdOut metrics collector's rules.

The parsing is a port of Katib v0.19's pkg/metricscollector/v1beta1/file-metricscollector/
file-metricscollector.go (parseLogsInTextFormat, newObservationLog), with the default filter of
pkg/metricscollector/v1beta1/common/const.go.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

# common.DefaultFilter
DEFAULT_FILTER = re.compile(r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)")
UNAVAILABLE = "unavailable"  # consts.UnavailableMetricValue
ZERO_TIME = "0001-01-01T00:00:00Z"  # time.Time{}.UTC().Format(time.RFC3339)
RFC3339NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")


@dataclass(frozen=True)
class MetricLog:
    timestamp: str
    name: str
    value: str


def parse_stdout(text: str, metrics: list[str]) -> list[MetricLog]:
    """The observation log Katib would store for this output; metrics[0] is the objective."""
    logs: list[MetricLog] = []
    for line in text.split("\n"):
        if not any(m in line for m in metrics):
            continue
        stamp = ZERO_TIME
        head, sep, _ = line.partition(" ")
        if sep and RFC3339NANO.match(head) and _parses(head):
            stamp = head
        for match in DEFAULT_FILTER.finditer(line):
            name, value = match.group(1).strip(), match.group(2).strip()
            if name in metrics:
                logs.append(MetricLog(stamp, name, value))
    if not any(log.name == metrics[0] for log in logs):
        return [MetricLog(ZERO_TIME, metrics[0], UNAVAILABLE)]
    return logs


def _parses(stamp: str) -> bool:
    try:
        dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def feasible_point(experiment: dict[str, Any], pick: str = "min") -> dict[str, str]:
    """One assignment per parameter, as the suggestion service would send it (strings)."""
    out = {}
    for p in experiment["spec"]["parameters"]:
        space = p["feasibleSpace"]
        if "list" in space:
            out[p["name"]] = space["list"][0 if pick == "min" else -1]
        else:
            out[p["name"]] = space["min"] if pick == "min" else space["max"]
    return out


def trial_run_spec(experiment: dict[str, Any], assignments: dict[str, str], trial_name: str) -> dict[str, Any]:
    """The trial's Job / PyTorchJob as Katib's trial controller would create it."""
    template = experiment["spec"]["trialTemplate"]
    text = json.dumps(template["trialSpec"])
    for param in template["trialParameters"]:
        ref = param["reference"]
        if ref == "${trialSpec.Name}":
            value = trial_name
        elif ref == "${trialSpec.Namespace}":
            value = experiment["metadata"].get("namespace", "default")
        else:
            value = assignments[ref]
        # JSON-escape the value: it lands inside a JSON string
        text = text.replace(f"${{trialParameters.{param['name']}}}", json.dumps(value)[1:-1])
    if "${trialParameters." in text:
        raise AssertionError(f"unsubstituted trial parameters left in {text[:200]}")
    return json.loads(text)


def trainjob_node_pod(run_spec: dict[str, Any], node_rank: int = 0, master_addr: str = "127.0.0.1",
                      master_port: int = 29500) -> dict[str, Any]:
    """A TrainJob node's pod template as the torch ClusterTrainingRuntime renders it: the runtime's
    "node" container with the TrainJob's trainer image, command, env and resources, the torch
    plugin's PET_* topology, and the TrainJob's runtime patch (node selector, security contexts)."""
    trainer = run_spec["spec"]["trainer"]
    patch = run_spec["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    pod_spec = dict(patch["template"]["spec"]["template"]["spec"])
    (container_patch,) = pod_spec.pop("containers")
    topology = {"PET_NNODES": trainer["numNodes"], "PET_NPROC_PER_NODE": trainer["numProcPerNode"],
                "PET_NODE_RANK": node_rank, "PET_MASTER_ADDR": master_addr, "PET_MASTER_PORT": master_port}
    container = {"name": "node", "image": trainer["image"], "command": trainer["command"],
                 "env": [*trainer.get("env", []), *({"name": k, "value": str(v)} for k, v in topology.items())],
                 "resources": trainer.get("resourcesPerNode", {}),
                 "securityContext": container_patch.get("securityContext", {})}
    return {"metadata": patch["template"]["spec"]["template"].get("metadata", {}),
            "spec": {**pod_spec, "containers": [container], "restartPolicy": "Never"}}


def primary_container(experiment: dict[str, Any], run_spec: dict[str, Any]) -> dict[str, Any]:
    name = experiment["spec"]["trialTemplate"]["primaryContainerName"]
    if run_spec["kind"] == "Job":
        pods = [run_spec["spec"]["template"]]
    elif run_spec["kind"] == "TrainJob":
        pods = [trainjob_node_pod(run_spec)]
    else:
        pods = [r["template"] for r in run_spec["spec"]["pytorchReplicaSpecs"].values()]
    for pod in pods:
        for container in pod["spec"]["containers"]:
            if container["name"] == name:
                return container
    raise AssertionError(f"no container named {name} in the trial spec")


def metric_names(experiment: dict[str, Any]) -> list[str]:
    objective = experiment["spec"]["objective"]
    return [objective["objectiveMetricName"], *(objective.get("additionalMetricNames") or [])]
