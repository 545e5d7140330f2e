"""The field's standard metrics as evaluator objects, and evaluation reports.

Each evaluator is configured once and called on model outputs; it returns a plain JSON-ready
dict (``task``, ``primary_metric``, ``greater_is_better``, ``units``, ``counts``, ``metrics``,
``details``) that :func:`write_report` records and the CLI prints:

* :class:`RetrievalEvaluator` - image<->text R@1/5/10 and mR (AMFMN/RemoteCLIP protocol);
* :class:`ZeroShotEvaluator` - top-1/top-5, per-class accuracy, confusion matrix;
* :class:`CaptionEvaluator` - BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, SPICE (coco-caption);
* :class:`ChangeCaptionEvaluator` - the same on all / changed / unchanged pairs (LEVIR-CC);
* :class:`VQAEvaluator` - overall and per-question-type accuracy;
* :class:`LocalizationEvaluator` - IoU, hit rate, accuracy@IoU for boxes, tile sets, masks.
"""

from skylens.evaluate.base import Evaluator, to_jsonable
from skylens.evaluate.captioning import (
    CAPTION_METRICS,
    CaptionEvaluator,
    ChangeCaptionEvaluator,
    is_no_change_caption,
)
from skylens.evaluate.classification import ZeroShotEvaluator, zero_shot_scores
from skylens.evaluate.localization import LocalizationEvaluator, iou
from skylens.evaluate.report import (
    ReportComparison,
    compare_reports,
    load_report,
    report_markdown,
    write_report,
)
from skylens.evaluate.retrieval import RetrievalEvaluator, retrieval_metrics
from skylens.evaluate.tokenizer import JavaPTBTokenizer, ptb_tokenize
from skylens.evaluate.vqa import VQAEvaluator, normalize_answer, question_type

__all__ = [
    "CAPTION_METRICS",
    "CaptionEvaluator",
    "ChangeCaptionEvaluator",
    "Evaluator",
    "JavaPTBTokenizer",
    "LocalizationEvaluator",
    "ReportComparison",
    "RetrievalEvaluator",
    "VQAEvaluator",
    "ZeroShotEvaluator",
    "compare_reports",
    "iou",
    "is_no_change_caption",
    "load_report",
    "normalize_answer",
    "ptb_tokenize",
    "question_type",
    "report_markdown",
    "retrieval_metrics",
    "to_jsonable",
    "write_report",
    "zero_shot_scores",
]
