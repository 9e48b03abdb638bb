"""Saga participants and clients in Python for sagad (docs/SDK-PYTHON.md).

    from saga_sdk import Participant, ok, failed, retry
"""

from .client import APIError, Client, Saga, Signal, WaitTimeout
from .participant import (Failed, Handler, Ok, Outcome, Participant, ParticipantError, Retry,
                          Stats, failed, ok, retry)
from .protocol import Command, ProtocolError, Reply, decode_command, decode_reply, encode_reply
from .sign import Keys, SignatureError

__version__ = "0.1.0"
__all__ = ["APIError", "Client", "Command", "Failed", "Handler", "Keys", "Ok", "Outcome",
           "Participant", "ParticipantError", "ProtocolError", "Reply", "Retry", "Saga",
           "Signal", "SignatureError", "Stats", "WaitTimeout", "decode_command", "decode_reply",
           "encode_reply", "failed", "ok", "retry"]
