"""Checks that the Kubernetes manifests given hang together.

Every document parses and names its apiVersion, kind and metadata.name; in
every pod template, each volume mount names a volume of the pod, each
ConfigMap, Secret and PersistentVolumeClaim that a volume or env var names is
defined in the manifests, each probe's port is a port of its container, and
seqkv and its neighbour share the Unix socket that seqkv listens on. Prints
the problems and exits 1 if there are any. With --config_out DIR, writes
each ConfigMap's *.yaml entries there, for seqkv-server to load.
"""
import sys

import yaml


def pod_specs(doc):
    kind = doc.get("kind")
    if kind == "Pod":
        yield doc["metadata"]["name"], doc["spec"]
    elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def check_pod(name, spec, defined, problems):
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for volume in volumes.values():
        for source, kind, key in (("configMap", "ConfigMap", "name"),
                                  ("secret", "Secret", "secretName"),
                                  ("persistentVolumeClaim",
                                   "PersistentVolumeClaim", "claimName")):
            if source in volume and (kind, volume[source][key]) not in defined:
                problems.append(f"{name}: volume {volume['name']} names "
                                f"{kind} {volume[source][key]}, not defined")
    containers = spec.get("containers", []) + spec.get("initContainers", [])
    if not containers:
        problems.append(f"{name}: no containers")
    for c in containers:
        cname = f"{name}/{c.get('name')}"
        if not c.get("image"):
            problems.append(f"{cname}: no image")
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        for path, volume in mounts.items():
            if volume not in volumes:
                problems.append(f"{cname}: mounts {volume}, not a volume")
        for env in c.get("env", []):
            ref = env.get("valueFrom", {})
            for source, kind in (("secretKeyRef", "Secret"),
                                 ("configMapKeyRef", "ConfigMap")):
                if source in ref:
                    if (kind, ref[source]["name"]) not in defined:
                        problems.append(f"{cname}: env {env['name']} names "
                                        f"{kind} {ref[source]['name']}, not defined")
                    elif ref[source]["key"] not in defined[(kind, ref[source]["name"])]:
                        problems.append(f"{cname}: env {env['name']} names key "
                                        f"{ref[source]['key']}, not in {kind}")
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        for probe_kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe = c.get(probe_kind)
            if probe is None:
                continue
            port = probe.get("httpGet", probe.get("tcpSocket", {})).get("port")
            if port not in ports and port not in ports.values():
                problems.append(f"{cname}: {probe_kind} port {port} is not a "
                                "port of the container")
        args = c.get("args", [])
        for arg in args:
            if arg.startswith("--listen=unix:"):
                socket_dir = arg[len("--listen=unix:"):].rsplit("/", 1)[0]
                volume = mounts.get(socket_dir)
                if volume is None:
                    problems.append(f"{cname}: socket directory {socket_dir} "
                                    "is not a mounted volume")
                    continue
                if "emptyDir" not in volumes.get(volume, {}):
                    problems.append(f"{cname}: socket volume {volume} is not "
                                    "an emptyDir")
                others = [o for o in containers if o is not c and volume in
                          {m["name"] for m in o.get("volumeMounts", [])}]
                if not others:
                    problems.append(f"{cname}: no other container mounts the "
                                    f"socket volume {volume}")
                # A neighbour that names a unix: address names this socket,
                # where it mounts the volume.
                for other in others:
                    other_mounts = {m["mountPath"]: m["name"]
                                    for m in other.get("volumeMounts", [])}
                    for env in other.get("env", []):
                        value = str(env.get("value", ""))
                        if not value.startswith("unix:"):
                            continue
                        path = value[len("unix:"):]
                        folder, file = path.rsplit("/", 1)
                        if (other_mounts.get(folder) != volume or
                                file != arg.rsplit("/", 1)[1]):
                            problems.append(
                                f"{name}/{other['name']}: {env['name']}={value} "
                                f"is not seqkv's socket {arg[len('--listen='):]}")
            if arg.startswith("--config="):
                config_dir = arg[len("--config="):].rsplit("/", 1)[0]
                if config_dir not in mounts:
                    problems.append(f"{cname}: config directory {config_dir} "
                                    "is not mounted")


def main(args):
    config_out = None
    if args[:1] == ["--config_out"]:
        config_out, args = args[1], args[2:]
    paths = args
    docs = []
    problems = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                if doc is None:
                    continue
                for field in ("apiVersion", "kind"):
                    if field not in doc:
                        problems.append(f"{path}: a document without {field}")
                if not doc.get("metadata", {}).get("name"):
                    problems.append(f"{path}: a {doc.get('kind')} without a name")
                docs.append(doc)
    # What each defined ConfigMap and Secret holds (its keys).
    defined = {}
    for doc in docs:
        kind = doc.get("kind")
        keys = set(doc.get("data", {}) or {}) | set(doc.get("stringData", {}) or {})
        defined[(kind, doc.get("metadata", {}).get("name"))] = keys
    for doc in docs:
        for name, spec in pod_specs(doc):
            check_pod(name, spec, defined, problems)
        if doc.get("kind") == "ConfigMap":
            for key, text in (doc.get("data") or {}).items():
                if key.endswith((".yaml", ".yml")):
                    if config_out:
                        with open(f"{config_out}/{key}", "w", encoding="utf-8") as out:
                            out.write(text)
                    try:
                        yaml.safe_load(text)
                    except yaml.YAMLError as e:
                        problems.append(f"ConfigMap {doc['metadata']['name']}: "
                                        f"{key} is not YAML: {e}")
    for problem in problems:
        print("FAIL:", problem)
    if not any(True for d in docs for _ in pod_specs(d)):
        print("FAIL: no pod template in", " ".join(paths))
        return 1
    print(f"{len(docs)} documents: " + ("ok" if not problems else "problems"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
