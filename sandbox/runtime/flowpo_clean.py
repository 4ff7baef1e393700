"""Every writable place of a sandbox back to its state before the first job, after every job.

A job can write wherever the sandbox lets its uid write: the scratch tmpfs, but also, depending
on the backend, ``/dev/shm``, the root tmpfs that bubblewrap builds (so ``/var/tmp``, ``/home``,
anything it creates), POSIX message queues and System V IPC objects. The supervisor takes a
snapshot of every writable tmpfs and mqueue mount when it starts and, after each job, removes
whatever is not in it; then it checks. A sandbox that cannot be brought back is reported unclean
and the pool replaces it, so nothing one job leaves reaches the next.

Only for a supervisor that is PID 1 of its own namespaces: without them these mounts would be the
host's. Standard library only.
"""
import ctypes
import os
import shutil

WALKED_TYPES = {"tmpfs", "mqueue"}
SKIPPED_ROOTS = ("/proc", "/sys")
SYSV = {"shm": "shmctl", "sem": "semctl", "msg": "msgctl"}
IPC_RMID = 0
LIBC = ctypes.CDLL(None, use_errno=True)  # loaded once: the supervisor cleans after every job and forks


def writable_mounts():
    """Mount points of read-write tmpfs and mqueue file systems."""
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, fstype = left.split(), right.split()[0]
            point = fields[4].replace("\\040", " ")
            if "rw" in fields[5].split(",") and fstype in WALKED_TYPES and not point.startswith(SKIPPED_ROOTS):
                mounts.append(point)
    return mounts


def snapshot(root):
    """{path: inode} of everything under ``root`` on its own file system (other mounts are not
    entered); unreadable directories are opened up first, since a job may have locked them. The
    directory entries give the inode and type (tmpfs and mqueue fill both), so only directories
    are stat'ed, for the file system they are on."""
    entries = {}
    device = os.lstat(root).st_dev
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            listing = list(os.scandir(directory))
        except PermissionError:
            os.chmod(directory, 0o700)
            listing = list(os.scandir(directory))
        for entry in listing:
            entries[entry.path] = entry.inode()
            if entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_dev == device:
                stack.append(entry.path)
    return entries


def remove(path):
    def allow_and_retry(func, failed, _):
        os.chmod(os.path.dirname(failed), 0o700)
        if os.path.isdir(failed) and not os.path.islink(failed):
            os.chmod(failed, 0o700)
            shutil.rmtree(failed, onerror=allow_and_retry)
        else:
            os.unlink(failed)

    if os.path.isdir(path) and not os.path.islink(path):
        os.chmod(path, 0o700)
        shutil.rmtree(path, onerror=allow_and_retry)
    else:
        os.unlink(path)


def sysv_ids(kind):
    try:
        with open(f"/proc/sysvipc/{kind}") as f:
            return [int(line.split()[1]) for line in list(f)[1:] if line.strip()]
    except OSError:
        return []


def remove_sysv_objects():
    """Remove the IPC namespace's System V shared memory, semaphores and message queues."""
    removed = False
    for kind, call in SYSV.items():
        for ident in sysv_ids(kind):
            removed = True
            if kind == "sem":
                getattr(LIBC, call)(ident, 0, IPC_RMID)
            else:
                getattr(LIBC, call)(ident, IPC_RMID, None)
    return not removed or not any(sysv_ids(kind) for kind in SYSV)


class Cleaner:
    def __init__(self, enabled):
        self.enabled = enabled
        self.baseline = {root: snapshot(root) for root in writable_mounts()} if enabled else {}

    def clean(self):
        """Back to the baseline; True when every writable place matches it again."""
        if not self.enabled:
            return True
        clean = remove_sysv_objects()
        for root, before in self.baseline.items():
            try:
                now = snapshot(root)
                if now == before:
                    continue  # most jobs write only their scratch directory, wiped apart
                for path, inode in sorted(now.items()):
                    if before.get(path) != inode and os.path.lexists(path):
                        remove(path)
                clean = clean and snapshot(root) == before
            except OSError:
                clean = False
        return clean
