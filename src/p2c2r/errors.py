"""One exception tree for the whole project.

    P2C2RError
    ├── ProtocolError                 a message broke the wire protocol
    │   ├── RemoteProtocolError       ... the other side sent it (answer with an error, keep serving)
    │   └── LocalProtocolError        ... we were about to send it (a bug on our side)
    ├── HandshakeError                the connection was refused at the handshake (carries a close code)
    ├── TaskError                     about one task
    │   ├── UnknownTaskKind           no kernel registered under that name
    │   ├── TaskInputError            input outside its schema or limits (names the field)
    │   ├── TaskOutputError           a peer's output is malformed (names the field)
    │   └── TaskFailed                the task ended in an explicit error (what the gamer receives)
    ├── LedgerError                   a ledger rule would be broken (unbalanced, double billing)
    └── StoreError                    SQLite failed; translated at the store boundary

Each error has a stable ``code`` string that travels in ``Error`` messages.
"""

from __future__ import annotations


class P2C2RError(Exception):
    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ProtocolError(P2C2RError):
    code = "protocol"


class RemoteProtocolError(ProtocolError):
    """The other side sent something the protocol does not allow."""

    def __init__(self, message: str, *, code: str = "bad_message") -> None:
        super().__init__(message)
        self.code = code


class LocalProtocolError(ProtocolError):
    code = "local_protocol"


class HandshakeError(P2C2RError):
    code = "handshake"

    def __init__(self, message: str, *, close_code: int, code: str = "handshake") -> None:
        super().__init__(message)
        self.close_code = close_code
        self.code = code


class TaskError(P2C2RError):
    code = "task"


class UnknownTaskKind(TaskError):
    code = "unknown_kind"

    def __init__(self, kind: str, known: list[str] | tuple[str, ...]) -> None:
        super().__init__(f"unknown task kind {kind!r}; known kinds: {', '.join(sorted(known))}")
        self.kind = kind


class TaskInputError(TaskError):
    """Input refused before any compute. ``field`` is a dotted path such as ``agents[3].goal``."""

    code = "bad_input"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class TaskOutputError(TaskError):
    code = "bad_output"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class TaskFailed(TaskError):
    """Terminal error of a task, as delivered to the gamer."""

    def __init__(self, task_id: str, code: str, message: str) -> None:
        super().__init__(f"task {task_id} failed ({code}): {message}")
        self.task_id = task_id
        self.code = code
        self.reason = message


class LedgerError(P2C2RError):
    code = "ledger"


class StoreError(P2C2RError):
    code = "store"
