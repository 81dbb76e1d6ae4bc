"""A checkpoint measured and judged: predictions on a split, the evaluator and its report
(``report``) and its page (``html_report``), the pass/fail operating point, the release gate, the
figures, the model card, and the end of training (``final``) that applies them all to the best
checkpoint.
"""

from trainer._exports import lazy

_EXPORTS = {
    "predict": "predictions",
    "split_loader": "predictions",
    "split_logits": "predictions",
    "label_map": "predictions",
    "true_float32": "predictions",
    "Report": "report",
    "evaluate_model": "report",
    "write_report": "report",
    "log_to": "report",
    "write_card": "report",
    "write_html": "html_report",
    "choose_operating_point": "operating_point",
    "rates_at": "operating_point",
    "write_to_checkpoint": "operating_point",
    "GateFailed": "gate",
    "apply_gate": "gate",
    "evaluate_gate": "gate",
    "exit_on_gate_failure": "gate",
    "rewrite_gate_args": "gate",
    "finish_training": "final",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
