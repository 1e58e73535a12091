"""Scoring separations of MUSDB18 with museval (BSS Eval v4), as the paper and SiSec 2018 did."""

from wave_unet_tf.evaluation.evaluator import evaluate
from wave_unet_tf.evaluation.scoring import MIXTURE_BASELINE, score_track, scores_path
from wave_unet_tf.evaluation.summary import METRICS, POOLED, TRACK_MEDIANS, format_table

__all__ = ["evaluate", "score_track", "scores_path", "format_table", "METRICS", "POOLED", "TRACK_MEDIANS",
           "MIXTURE_BASELINE"]
