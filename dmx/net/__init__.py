"""dmx as a node on the hospital network: C-STORE out (``dmx send``) and in (``dmx listen``).

pynetdicom is imported lazily, only by these commands; it is in the ``dicom`` extra
(``pip install 'dmx[dicom]'``).
"""

from dmx.net.send import Peer, SendResult, parse_peer, send_files

__all__ = ["Peer", "SendResult", "parse_peer", "send_files"]
