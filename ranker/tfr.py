"""Every use of tensorflow-ranking lives here, so the TF < 2.16 pin can be lifted in one place.

What we take from TF-Ranking: the ELWC parser (batched, with a list mask), the listwise softmax
loss and the nDCG metric.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_ranking as tfr

from ranker.features import spec as fs
from ranker.features import tensors


def parse_elwc_batch(serialized: tf.Tensor, spec: fs.FeatureSpec, list_size: int,
                     with_device: bool = True, with_labels: bool = True,
                     with_request_id: bool = False) -> dict[str, tf.Tensor]:
    """A 1-D batch of serialized ELWCs → dense features `[batch, list_size, …]` plus MASK.

    Lists longer than `list_size` are truncated (preprocess caps lists at the spec's
    max_list_size); shorter ones are padded with the parse defaults and masked out.
    """
    return tfr.data.parse_from_example_list(
        serialized,
        list_size=list_size,
        context_feature_spec=tensors.context_parse_spec(spec, with_device=with_device,
                                                        with_request_id=with_request_id),
        example_feature_spec=tensors.example_parse_spec(spec, with_labels=with_labels),
        mask_feature_name=fs.MASK,
    )


def softmax_loss() -> tf.keras.losses.Loss:
    """Listwise softmax cross-entropy; TF-Ranking treats negative labels as padding."""
    return tfr.keras.losses.SoftmaxLoss(reduction=tf.keras.losses.Reduction.SUM_OVER_BATCH_SIZE)


def ndcg(topn: int, name: str | None = None) -> tf.keras.metrics.Metric:
    """nDCG@topn with TF-Ranking's default gain 2^label − 1 and log2 discount."""
    return tfr.keras.metrics.NDCGMetric(name=name or f"ndcg@{topn}", topn=topn)
