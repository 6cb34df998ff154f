"""Prints the cargo test target options for one half of the workspace's tests (tests/run runs
the two halves side by side: both mostly wait on moto, a browser or their own timers, so two at
once finish in about the time of the longer one).

    python3 tests/test_halves.py moto    # hookgate-testkit's suites: the adapters on moto
    python3 tests/test_halves.py rest    # every other test target, the libraries and binaries

Both halves select the whole workspace (`--workspace`), so cargo resolves the same features as
for `cargo test --workspace` and reuses its build; a half is chosen by target name. A name in
both halves would run twice and one missing from both would not run, so every integration test
of the workspace is in exactly one half and a name shared across the halves fails here.
"""

import json
import subprocess
import sys

MOTO_PACKAGE = "hookgate-testkit"


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] not in ("moto", "rest"):
        print(__doc__, file=sys.stderr)
        return 2
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--no-deps", "--format-version", "1"],
        check=True, capture_output=True, text=True).stdout)
    halves = {"moto": set(), "rest": set()}
    for package in meta["packages"]:
        half = "moto" if package["name"] == MOTO_PACKAGE else "rest"
        for target in package["targets"]:
            if "test" in target["kind"] and target.get("test", True):
                halves[half].add(target["name"])
    shared = halves["moto"] & halves["rest"]
    if shared:
        print(f"test targets named alike in {MOTO_PACKAGE} and elsewhere: {sorted(shared)}; "
              "rename one (cargo selects tests by name)", file=sys.stderr)
        return 1
    args = []
    if sys.argv[1] == "rest":
        args += ["--lib", "--bins"]
    for name in sorted(halves[sys.argv[1]]):
        args += ["--test", name]
    print(" ".join(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
