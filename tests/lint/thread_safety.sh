#!/usr/bin/env bash
# Checks the lock annotations (ABSL_GUARDED_BY, ABSL_EXCLUSIVE_LOCKS_REQUIRED)
# of server/, storage/ and cluster/ with clang's -Wthread-safety, using the compile
# commands of the build. g++ ignores the annotations; this makes them count.
# Usage: thread_safety.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build_dir=$1
source_dir=$2
if ! command -v clang++ >/dev/null; then
  echo "clang++ is not installed: cannot check lock annotations" >&2
  exit 77
fi
python3 - "$build_dir" "$source_dir" <<'PY'
import concurrent.futures, json, os, shlex, subprocess, sys
build_dir, source_dir = sys.argv[1], sys.argv[2]
commands = json.load(open(os.path.join(build_dir, "compile_commands.json")))
jobs = []
for entry in commands:
    rel = os.path.relpath(entry["file"], source_dir)
    if not (rel.startswith("server/") or rel.startswith("storage/") or
            rel.startswith("cluster/")):
        continue
    if "/gen/" in entry["file"] or "dashboard_assets" in entry["file"]:
        continue
    args = shlex.split(entry["command"])
    out, skip = [], False
    for arg in args[1:]:
        if skip:
            skip = False
            continue
        if arg == "-o":
            skip = True
            continue
        if arg == "-c":
            continue
        out.append(arg)
    cmd = ["clang++"] + out + ["-fsyntax-only", "-Wthread-safety",
                               "-Werror=thread-safety",
                               "-Wno-unused-command-line-argument",
                               "-Wno-unknown-warning-option"]
    jobs.append((rel, cmd, entry["directory"]))


def check(job):
    rel, cmd, cwd = job
    return rel, subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


# First, that the check is live: a read of a guarded member without its lock
# must fail with the same flags.
probe_src = os.path.join(build_dir, "thread_safety_probe.cc")
with open(probe_src, "w") as f:
    f.write('#include "absl/synchronization/mutex.h"\n'
            "struct Probe { absl::Mutex mu; int n ABSL_GUARDED_BY(mu) = 0;\n"
            "  int Read() { return n; } };\n")
rel, cmd, cwd = jobs[0] if jobs else ("", [], build_dir)
probe = [arg for arg in cmd if arg != os.path.join(source_dir, rel)
         and not arg.endswith("/" + rel)] + [probe_src]
result = subprocess.run(probe, cwd=cwd, capture_output=True, text=True)
if not jobs or "requires holding mutex" not in result.stderr:
    print("the probe with an unguarded read was not flagged: the check is "
          "not live\n" + result.stderr)
    sys.exit(1)
os.remove(probe_src)

failed = 0
with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
    for rel, result in pool.map(check, jobs):
        if result.returncode != 0:
            failed += 1
            print(f"{rel}:\n{result.stderr}")
print(f"checked {len(jobs)} files, {failed} with lock annotation errors")
sys.exit(1 if failed or not jobs else 0)
PY
