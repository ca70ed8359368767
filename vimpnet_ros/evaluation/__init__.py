"""Evaluation: metrics as the ViMP-Net reference computes them, VRDS test-set scoring, bag reports.

``metrics`` needs only numpy and OpenCV; ``vrds_eval`` (torch) restores whole videos
with a model and scores them (``vimpnet-ros evaluate``).
"""

from vimpnet_ros.evaluation.metrics import VideoScores, aggregate, mask_iou, psnr, ssim, to_uint8

__all__ = ["VideoScores", "aggregate", "mask_iou", "psnr", "ssim", "to_uint8"]
