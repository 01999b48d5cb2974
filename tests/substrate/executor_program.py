"""A small executor program for the agent tests (started by a real agent as a child process).

What it does with a task depends on the task's ``data``:

``b""`` / ``b"finish"``  RUNNING, then FINISHED with this process's pid as data
``b"hang"``              RUNNING, then nothing until killed (the default kill reports KILLED)
``b"fail"``              FAILED
``b"big"``               tries a status update above the payload limit, then FINISHED
``b"exit:N"``            exits the whole process with status N
``b"wait"``              RUNNING, then FINISHED (pid as data) when the message
                         ``finish:<task_id>`` arrives
``b"stubborn"``          RUNNING, and ignores kills (the agent must kill the executor)
``b"flood:N"``           sends N framework messages as fast as it can, then FINISHED
``b"write:NAME:DATA"``   writes DATA to NAME in the framework directory (``link`` also plants a
                         symlink to /etc/passwd), then FINISHED with the agent address as data
Framework messages are echoed back with an ``echo:`` prefix (``b"unacked?"`` is answered with
the number of unacknowledged updates). On SHUTDOWN it writes
``shutdown-called`` into its sandbox (unless ``IGNORE_SHUTDOWN`` is set, then it keeps running).
"""
import os
import sys
import time

from substrate import Executor, ExecutorDriver, InvalidRequest, TaskState


class TestExecutor(Executor):
    def __init__(self):
        self.waiting = set()
        self.stubborn = set()

    def registered(self, driver, executor_info, framework_info, agent_info):
        with open(os.path.join(driver.sandbox, "registered"), "w") as f:
            f.write(f"{executor_info.executor_id} {framework_info.name} {agent_info.id}\n")

    def launch_task(self, driver, task):
        data = task.data
        pid = str(os.getpid()).encode()
        if data.startswith(b"write:"):
            _, name, content = data.split(b":", 2)
            target = os.path.join(driver.framework_dir, name.decode())
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(content)
            if name == b"link":
                os.symlink("/etc/passwd", os.path.join(driver.framework_dir, "escape"))
            print("wrote", name.decode(), flush=True)
            driver.update(task.task_id, TaskState.FINISHED, data=driver.agent_address.encode())
            return
        if data.startswith(b"exit:"):
            os._exit(int(data[5:]))
        driver.update(task.task_id, TaskState.RUNNING)
        if data in (b"", b"finish"):
            driver.update(task.task_id, TaskState.FINISHED, data=pid)
        elif data == b"fail":
            driver.update(task.task_id, TaskState.FAILED, message="asked to fail")
        elif data == b"big":
            try:
                too_big = b"x" * (driver.max_payload_bytes + 1)
                driver.update(task.task_id, TaskState.FINISHED, data=too_big)
            except InvalidRequest as exc:
                driver.update(task.task_id, TaskState.FINISHED, message=f"refused: {exc}")
        elif data == b"hang":
            pass
        elif data == b"wait":
            self.waiting.add(task.task_id)
        elif data == b"stubborn":
            self.stubborn.add(task.task_id)
        elif data.startswith(b"flood:"):
            for i in range(int(data[6:])):
                driver.send_framework_message(b"flood:%d" % i)
            driver.update(task.task_id, TaskState.FINISHED, data=pid)

    def kill_task(self, driver, task_id):
        if task_id not in self.stubborn:
            super().kill_task(driver, task_id)

    def framework_message(self, driver, data):
        if data.startswith(b"finish:") and data[7:].decode() in self.waiting:
            self.waiting.discard(data[7:].decode())
            driver.update(data[7:].decode(), TaskState.FINISHED, data=str(os.getpid()).encode())
        elif data == b"unacked?":
            driver.send_framework_message(b"unacked:%d" % driver.unacknowledged)
        else:
            driver.send_framework_message(b"echo:" + data)

    def shutdown(self, driver):
        with open(os.path.join(driver.sandbox, "shutdown-called"), "w") as f:
            f.write("yes\n")
        if os.environ.get("IGNORE_SHUTDOWN"):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    sys.exit(ExecutorDriver(TestExecutor()).run())
