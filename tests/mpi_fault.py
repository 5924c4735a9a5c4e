#!/usr/bin/env python3
"""Runs tests/test_mpi_fault.cpp under mpirun and checks how the job ends.

usage: mpi_fault.py MODE TIMEOUT_S -- MPIRUN [MPIRUN ARGS...] TEST_MPI_FAULT

MODE hang/step: rank 1 stops answering; the job must end non-zero within 15 s with
weft's message naming the operation, rank 1 and the timeout. MODE kill: rank 1 dies; the job must
end non-zero within 15 s (mpirun notices the death, or weft's timeout does). MODE ok: exit 0.
"""
import os
import subprocess
import sys
import time


def main():
    sep = sys.argv.index("--")
    mode, timeout_s = sys.argv[1], float(sys.argv[2])
    cmd = sys.argv[sep + 1:] + [mode]
    env = dict(os.environ, WEFT_MPI_TIMEOUT=str(timeout_s))
    print("running:", " ".join(cmd), f"(WEFT_MPI_TIMEOUT={timeout_s})", flush=True)
    start = time.monotonic()
    # A hung job would be a failure of the very thing under test: give it a hard limit and kill
    # the whole process group.
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, _ = proc.communicate()
        print(out)
        print(f"FAIL: the job was still running after 60 s (mode {mode}): it hangs")
        return 1
    elapsed = time.monotonic() - start
    print(out)
    print(f"exit status {proc.returncode}, {elapsed:.1f} s")

    errors = []
    if mode == "ok":
        if proc.returncode != 0:
            errors.append("a job without faults must exit 0")
        if "done" not in out:
            errors.append("rank 0 did not report 'done'")
    else:
        if proc.returncode == 0:
            errors.append("a job whose rank 1 failed must exit non-zero")
        limit = max(15.0, timeout_s + 10.0)  # generous for a loaded 2-core CI machine
        if elapsed > limit:
            errors.append(f"the job took {elapsed:.1f} s to end, more than {limit:.0f} s")
        if mode in ("hang", "step"):
            want = [f"timed out after {timeout_s:g} s waiting for rank 1",
                    "rank 1 stopped answering or died", "all_reduce_sum (4097 floats) on rank 0",
                    "WEFT_MPI_TIMEOUT"]
            errors += [f"missing from the output: '{w}'" for w in want if w not in out]
        else:
            # Either mpirun saw the death first or weft's timeout fired; both must say so.
            if not any(s in out for s in ("exited on signal 9", "stopped answering or died", "Killed")):
                errors.append("no message says that rank 1 died")
        if "done" in out:
            errors.append("rank 0 finished as if nothing had happened")
    for e in errors:
        print("FAIL:", e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
