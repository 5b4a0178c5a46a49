"""Beam's S3 file system cannot write an empty file; importing this module makes it able to.

apache_beam.io.aws.s3io.S3Uploader (Beam 2.77) uploads every file as a multipart upload and
uploads a part only for bytes it holds, so closing an empty file completes an upload of zero parts,
which S3 refuses ("MalformedXML": a multipart upload needs at least one part; AWS and
S3-compatible servers alike). preprocess writes empty files by design (an empty dead-letter shard,
the vocabulary of a feature that never had a value). The patch uploads one empty part first: S3
sets no minimum size on the last part.

Imported by the preprocess driver, and by every Beam worker through `--beam_plugins` (which
preprocess adds: PLUGIN), so remote runners' workers are patched too. Idempotent.
"""
from __future__ import annotations

PLUGIN = __name__  # what `--beam_plugins` names

try:
    from apache_beam.io.aws import s3io
except ImportError:  # pragma: no cover  (Beam without its AWS module: no s3:// to patch)
    s3io = None


def _patch() -> None:
    uploader = getattr(s3io, "S3Uploader", None)
    if uploader is None or getattr(uploader.finish, "_ranker_empty_ok", False):
        return
    original = uploader.finish

    def finish(self):
        if not self.parts and len(self.buffer) == 0:
            self._write_to_s3(b"")  # one empty part: a zero-byte object
        return original(self)

    finish._ranker_empty_ok = True
    uploader.finish = finish


_patch()
