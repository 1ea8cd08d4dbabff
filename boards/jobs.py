"""Running the synthesis tools: one or several side by side, with progress lines while they
run."""

import subprocess
import time
from pathlib import Path

__all__ = ["POLL", "tail", "run_tool", "run_jobs"]


def tail(path, lines=40):
    """The last ``lines`` lines of the log at ``path`` (for an error message)."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def run_tool(what, argv, cwd, logfile, log, heartbeat=30.0):
    """Run ``argv`` in ``cwd``; log progress every ``heartbeat`` seconds. Returns (rc, seconds)."""
    return run_jobs(what, [(what, argv, cwd, logfile)], log, heartbeat=heartbeat)[0]


#: Seconds between checks of running tools in :func:`run_jobs`.
POLL = 0.2


def run_jobs(what, jobs, log, *, workers=1, heartbeat=30.0, done=None, finish_all=False):
    """Run tools side by side, at most ``workers`` at a time, in the order given.

    Each job is ``(label, argv, cwd, logfile)``: ``argv`` runs in ``cwd`` with its output in
    ``cwd/<logfile>.stdout``. Every ``heartbeat`` seconds one line is logged: ``"<what>: still
    running (<s> s)"`` for one job, or with the state of each (running, done or waiting) for
    several. ``done(index, rc, seconds)`` is called as each job ends; if it raises, or this is
    interrupted, the jobs still running are killed. With ``finish_all`` (nextpnr's seeds,
    whose figures stand on their own), an exception from ``done`` is logged as ``"<what>:
    <label> failed"`` and the other jobs run to their end; then the one error is raised, or a
    :class:`RuntimeError` whose message joins the errors' messages.

    Returns
    -------
    list of (int, float)
        Exit code and seconds of each job, in the order of ``jobs``.
    """
    start = time.monotonic()
    results = [None] * len(jobs)
    running = {}                        # index -> (process, output file, start time)
    waiting = list(range(len(jobs)))
    beat = start + heartbeat
    errors = []
    try:
        while waiting or running:
            while waiting and len(running) < workers:
                index = waiting.pop(0)
                label, argv, cwd, logfile = jobs[index]
                out = open(Path(cwd) / f"{logfile}.stdout", "wb")
                try:
                    proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
                except BaseException:
                    out.close()
                    raise
                running[index] = (proc, out, time.monotonic())
            time.sleep(POLL)
            for index, (proc, out, began) in list(running.items()):
                if proc.poll() is None:
                    continue
                out.close()
                del running[index]
                results[index] = (proc.returncode, time.monotonic() - began)
                if done is not None:
                    try:
                        done(index, *results[index])
                    except Exception as error:
                        if not finish_all:
                            raise
                        errors.append(error)
                        log(f"{what}: {jobs[index][0]} failed")
            now = time.monotonic()
            if now >= beat and (waiting or running):
                if len(jobs) == 1:
                    log(f"{what}: still running ({now - start:.0f} s)")
                else:
                    states = [f"{label} " + ("waiting" if results[i] is None and i not in running
                                             else "done" if results[i] is not None
                                             else f"running {now - running[i][2]:.0f} s")
                              for i, (label, *_) in enumerate(jobs)]
                    log(f"{what}: still running ({now - start:.0f} s): {', '.join(states)}")
                beat += heartbeat * (1 + (now - beat) // heartbeat)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise RuntimeError("\n\n".join(str(error) for error in errors))
    finally:
        for proc, out, _ in running.values():
            proc.kill()
            proc.wait()
            out.close()
    return results
