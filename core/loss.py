"""Make multi-process training compute and report the true loss (transformers 5.23).

What transformers does: when a model's ``forward`` takes ``**kwargs``, the Trainer assumes the
model divides its summed loss by ``num_items_in_batch`` (the label count over all processes and
accumulation steps). So it skips the division by ``gradient_accumulation_steps`` and, with
``average_tokens_across_devices`` (the default), multiplies the loss by the number of processes
to undo DDP's gradient averaging (``Trainer.compute_loss``).

What goes wrong: many models take ``**kwargs`` (for attention options) but compute a plain mean
over their own batch and ignore ``num_items_in_batch`` — T5, BART, Marian and the BERT-family
classification heads among them. Under N processes their loss, and so their gradients, come
out N times too large, and with accumulation the gradients are ``gradient_accumulation_steps``
times too large. The logged loss is N times the single-process value (the "world_size times
too high" loss seen with gloo). transformers lists the same problem for other models (e.g.
huggingface/transformers#41006, #47688).

What tx does (:func:`with_true_loss`): for such a model it turns the model's local mean into
the quantity the Trainer expects, ``local sum / num_items_in_batch``, by multiplying it with
``local label count / num_items_in_batch``. The gradient is then exactly that of the mean over
every label of the global batch, as in one process with an N times larger batch. Models whose
loss does use ``num_items_in_batch`` (causal and masked LM heads) are left alone.

The final ``train_loss`` had a second problem: the Trainer adds the steps since the last log
from rank 0 alone, without averaging across processes. :func:`final_log_callback` logs at the
last step of a multi-process run, so every step's loss is averaged across processes.
"""

from __future__ import annotations

import inspect
from typing import Any

IGNORE_INDEX = -100


def loss_uses_num_items(model: Any) -> bool:
    """Does ``model``'s loss divide by ``num_items_in_batch`` when given it?

    transformers' own declaration (``accepts_loss_kwargs``) wins. Otherwise: the forward code
    names ``num_items_in_batch``, or it calls ``self.loss_function`` and that function takes
    ``num_items_in_batch`` (``ForCausalLMLoss``, ``ForMaskedLMLoss``). When the source cannot be
    read, the answer is yes: transformers' behaviour is kept.
    """
    declared = getattr(type(model), "accepts_loss_kwargs", None)
    if declared is not None:
        return bool(declared)
    try:
        source = inspect.getsource(type(model).forward)
    except (OSError, TypeError):
        return True
    if "num_items_in_batch" in source:
        return True
    if "loss_function(" in source:
        try:
            params = inspect.signature(model.loss_function).parameters
        except (TypeError, ValueError, AttributeError):
            return True
        return "num_items_in_batch" in params
    return False


def _unwrap(model: Any) -> Any:
    base = getattr(model, "get_base_model", None)
    return base() if callable(base) else model


def with_true_loss(trainer_cls: type) -> type:
    """A subclass of ``trainer_cls`` (Trainer or Seq2SeqTrainer) whose loss is normalized by
    the global label count when the model itself only averages over its local batch."""

    class TrueLoss(trainer_cls):  # type: ignore[valid-type, misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            model = _unwrap(self.accelerator.unwrap_model(self.model))
            # Only when the Trainer will treat the loss as normalized by num_items_in_batch.
            self.tx_rescale_loss = bool(
                self.model_accepts_loss_kwargs
                and self.compute_loss_func is None
                and self.label_smoother is None
                and self.args.n_gpu <= 1  # not the single-process DataParallel mode
                and not loss_uses_num_items(model)
            )

        def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            labels = inputs.get("labels") if hasattr(inputs, "get") else None
            result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                          num_items_in_batch=num_items_in_batch)
            if not (self.tx_rescale_loss and num_items_in_batch is not None and labels is not None):
                return result
            import torch

            local = (labels != IGNORE_INDEX).sum().to(dtype=torch.float32)
            # local mean * local count / global count = local sum / global count (what the
            # Trainer expects; it has already multiplied by the number of processes)
            factor = local / torch.as_tensor(num_items_in_batch, dtype=torch.float32).to(local.device)
            if return_outputs:
                loss, outputs = result
                return loss * factor.to(loss.device), outputs
            return result * factor.to(result.device)

    TrueLoss.__name__ = TrueLoss.__qualname__ = f"Tx{trainer_cls.__name__}"
    return TrueLoss


def final_log_callback() -> Any:
    """A callback that logs at the last step of a multi-process run (see the module docstring)."""
    from transformers import TrainerCallback

    class LogLastStep(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if getattr(args, "world_size", 1) > 1 and (
                state.global_step >= state.max_steps or control.should_training_stop
            ):
                control.should_log = True
            return control

    return LogLastStep()
