#!/usr/bin/env python3
"""Regenerate the JSON schemas kubeconform checks the chart against.

kubeconform fetches schemas from the network by default; CI has none, so the
schemas of every kind the chart renders are vendored here, one standalone
strict file per kind, named as kubeconform's
'{{.ResourceKind}}{{.KindSuffix}}.json' template expects:

  * Kubernetes kinds: from the PyPI package kubernetes-validate (its
    kubernetes-json-schema/<version>-local-strict/ folder: the kind's file
    plus the shared _definitions.json). Each file here is the kind's schema
    with the definitions it reaches copied into its own "$defs", so it needs
    no other file and no network.
  * CRDs (InferencePool, ServiceMonitor): the openAPIV3Schema of each served
    version of the CRD YAML given, made strict the way kubeconform's
    openapi2jsonschema.py does (additionalProperties: false on every object
    that lists its properties), with apiVersion and kind pinned.

Usage (see SOURCES.md for the inputs used):

  python3 -m pip download --no-deps kubernetes-validate==1.37.0 -d /tmp/kv
  python3 deploy/helm/schemas/vendor.py --wheel /tmp/kv/kubernetes_validate-1.37.0-py3-none-any.whl \
      --k8s v1.33.0 --crd inference.networking.k8s.io_inferencepools.yaml \
      --crd monitoring.coreos.com_servicemonitors.yaml
"""
import argparse
import copy
import json
import os
import re
import sys
import zipfile

import yaml

# The Kubernetes kinds the chart renders, as <kind>-<group>-<version>.
KINDS = [
    "deployment-apps-v1",
    "service-v1",
    "serviceaccount-v1",
    "configmap-v1",
    "role-rbac-v1",
    "rolebinding-rbac-v1",
    "horizontalpodautoscaler-autoscaling-v2",
]

REF = re.compile(r"^(?:/api/_definitions\.json)?#/\$defs/(.+)$")


def refs(node):
    """Yields every $ref string under node."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)


def rewrite(node):
    """Points every definition $ref at the file's own $defs."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                m = REF.match(v)
                if not m:
                    sys.exit(f"unexpected $ref {v!r}")
                out[k] = "#/$defs/" + m.group(1)
            else:
                out[k] = rewrite(v)
        return out
    if isinstance(node, list):
        return [rewrite(v) for v in node]
    return node


def standalone(kind_schema, defs):
    """The kind's schema with the definitions it reaches in its own $defs."""
    need, todo = set(), list(refs(kind_schema))
    while todo:
        m = REF.match(todo.pop())
        if not m:
            sys.exit("unexpected $ref")
        name = m.group(1)
        if name in need:
            continue
        need.add(name)
        todo.extend(refs(defs[name]))
    out = rewrite(kind_schema)
    out.pop("$id", None)
    out["$defs"] = {n: rewrite(defs[n]) for n in sorted(need)}
    return out


def strict(node):
    """additionalProperties: false on every object schema listing properties."""
    if isinstance(node, dict):
        node = {k: strict(v) for k, v in node.items()}
        if "properties" in node and "additionalProperties" not in node \
                and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [strict(v) for v in node]
    return node


def crd_schemas(path):
    """Yields (file name, schema) for every served version of a CRD."""
    with open(path) as f:
        crd = yaml.safe_load(f)
    spec = crd["spec"]
    group, kind = spec["group"], spec["names"]["kind"]
    for v in spec["versions"]:
        if not v.get("served", True):
            continue
        s = strict(copy.deepcopy(v["schema"]["openAPIV3Schema"]))
        s["properties"]["apiVersion"] = {"type": "string", "enum": [f"{group}/{v['name']}"]}
        s["properties"]["kind"] = {"type": "string", "enum": [kind]}
        s["$schema"] = "http://json-schema.org/draft-07/schema#"
        yield f"{kind.lower()}-{group.split('.')[0]}-{v['name']}.json", s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wheel", required=True, help="kubernetes-validate wheel")
    ap.add_argument("--k8s", default="v1.33.0", help="Kubernetes version of the schemas")
    ap.add_argument("--crd", action="append", default=[], help="CRD YAML file (repeatable)")
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    a = ap.parse_args()
    base = f"kubernetes_validate/kubernetes-json-schema/{a.k8s}-local-strict/"
    with zipfile.ZipFile(a.wheel) as z:
        defs = json.loads(z.read(base + "_definitions.json"))["$defs"]
        files = {k + ".json": standalone(json.loads(z.read(base + k + ".json")), defs) for k in KINDS}
    for path in a.crd:
        files.update(crd_schemas(path))
    for name, schema in sorted(files.items()):
        with open(os.path.join(a.out, name), "w") as f:
            json.dump(schema, f, indent=1, sort_keys=True)
            f.write("\n")
        print(name)


if __name__ == "__main__":
    main()
