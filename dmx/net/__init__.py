"""dmx as a node on the hospital network: C-STORE out (``dmx send``) and in (``dmx listen``).

pynetdicom is imported lazily, only by these commands; it is in the ``dicom`` extra
(``pip install 'dmx[dicom]'``).
"""

from dmx.net.listen import Listener, ListenerConfig
from dmx.net.send import FileStatus, Peer, SendResult, parse_peer, send_files
from dmx.net.spool import Spool, Stored

__all__ = [
    "FileStatus",
    "Listener",
    "ListenerConfig",
    "Peer",
    "SendResult",
    "Spool",
    "Stored",
    "parse_peer",
    "send_files",
]
