"""write.py: lists written as ELWC TFRecords and read back."""
from __future__ import annotations


import apache_beam as beam

from ranker.features import spec as fs
from ranker.pipeline import parse
from ranker.pipeline.write import WriteElwc

from pipeline_helpers import SPEC, beam_pipeline, dumps, record


def test_write_elwc_round_trip(tmp_path):
    import tensorflow as tf

    from ranker import tfr

    impressions = [parse.parse_line(dumps(record("r1", pos, clicked=int(pos == 2),
                                                 features={"price": float(pos), "brand": f"b{pos}",
                                                           "emb": [pos, 0, 1]})),
                                    SPEC, "a", pos)[0] for pos in (2, 1, 3)]
    with beam_pipeline() as p:
        _ = p | beam.Create([("r1", "clicked", impressions)]) | WriteElwc(
            SPEC, str(tmp_path / "out" / "part"))
    files = [str(f) for f in (tmp_path / "out").glob("*.tfrecord.gz")]
    assert files
    batch = next(iter(tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4)))
    parsed = tfr.parse_elwc_batch(batch, SPEC, list_size=5)
    assert parsed[fs.POSITION].numpy().tolist() == [[1, 2, 3, 0, 0]]
    assert parsed[fs.CLICKED].numpy().tolist() == [[0, 1, 0, -1, -1]]
    assert parsed[fs.MASK].numpy().tolist() == [[True, True, True, False, False]]
    assert parsed["price"].numpy().tolist() == [[1.0, 2.0, 3.0, 0.0, 0.0]]
    assert parsed["brand"].numpy()[0, :3].tolist() == [b"b1", b"b2", b"b3"]
    assert parsed["emb"].numpy()[0, 2].tolist() == [3.0, 0.0, 1.0]
    assert parsed["query"].numpy().tolist() == [b"shoes"]
    assert parsed[fs.DEVICE].numpy().tolist() == [b"desktop"]
