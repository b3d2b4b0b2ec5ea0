"""The imaging node: the DICOM listener (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET, Storage
Commitment) on the node's own Upper Layer (:mod:`dicom_qr.ul`), its index and storage,
DICOMweb, XDS-I.b, forwarding, back-fill and import — DICOM PS3.4, PS3.5 (character sets),
PS3.7 / PS3.8 (messages, network), on pydicom, with pynetdicom where the node is the SCU.

Importing the package corrects one thing of pydicom 3.0's character-set handling: it lists the
Python codec of ISO 2022 IR 58 (GB 2312) among those that handle their ISO 2022 escape
sequences themselves, but Python's ``iso_ir_58`` is plain EUC-CN, so ``ESC $ ) A`` stayed in
decoded text and was never written before GB 2312 bytes.  Taken off that list, pydicom strips
and writes the escape sequence itself, as PS3.5 Annex K (K.2, the Chinese examples) has it.

And one setting of pynetdicom's: a C-STORE of a file path sends the file's data set as it is
(the transfer syntax read from its File Meta Information), not decoded and encoded again — the
node forwards and imports instances byte for byte; where a peer does not take a file's
transfer syntax the node passes pynetdicom a decoded data set instead.
"""
from pydicom import charset as _charset
from pynetdicom import _config as _pynetdicom_config

_pynetdicom_config.STORE_SEND_CHUNKED_DATASET = True

_charset.handled_encodings = tuple(e for e in _charset.handled_encodings if e != "iso_ir_58")
