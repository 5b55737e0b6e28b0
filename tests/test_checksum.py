import hashlib

from dmx.io.checksum import sha256_files


def test_sha256_of_concatenation(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"hello ")
    b.write_bytes(b"world" * 300_000)
    assert sha256_files([a]) == hashlib.sha256(b"hello ").hexdigest()
    assert sha256_files([a, b]) == hashlib.sha256(b"hello " + b"world" * 300_000).hexdigest()
    assert sha256_files([b, a]) != sha256_files([a, b])
