"""tx.core.loss: which models ignore ``num_items_in_batch``, and the rescaling that makes their
loss the one the Trainer expects (local sum / global label count). The end-to-end proof (2
processes give the weights and loss of 1) is in test_multiprocess.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tx.core.loss import loss_uses_num_items, with_true_loss


def tiny(kind: str) -> Any:
    import transformers as t

    if kind == "t5":
        return t.T5ForConditionalGeneration(t.T5Config(vocab_size=32, d_model=8, d_kv=4, d_ff=8, num_layers=1,
                                                       num_heads=2, decoder_start_token_id=0, dropout_rate=0.0))
    if kind == "bert":
        return t.BertForSequenceClassification(t.BertConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1,
                                                            num_attention_heads=2, intermediate_size=8,
                                                            hidden_dropout_prob=0.0,
                                                            attention_probs_dropout_prob=0.0))
    return t.LlamaForCausalLM(t.LlamaConfig(vocab_size=32, hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                                            num_attention_heads=2, num_key_value_heads=2))


def test_models_whose_loss_ignores_num_items_in_batch_are_recognised() -> None:
    assert loss_uses_num_items(tiny("t5")) is False  # CrossEntropyLoss mean over its own batch
    assert loss_uses_num_items(tiny("bert")) is False
    assert loss_uses_num_items(tiny("llama")) is True  # self.loss_function(..., num_items_in_batch)


@pytest.mark.parametrize("kind,rescaled", [("bert", True), ("llama", False)])
def test_local_mean_becomes_local_sum_over_the_global_count(kind: str, rescaled: bool, tmp_path: Path) -> None:
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(0)
    model = tiny(kind)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    trainer = with_true_loss(Trainer)(model=model, args=args)
    assert trainer.tx_rescale_loss is rescaled
    ids = torch.randint(1, 32, (4, 6))
    labels = torch.tensor([0, 1, 1, 0]) if kind == "bert" else ids.clone()
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    model.eval()
    with torch.no_grad():
        mean = model(**inputs).loss
        count = 4 if kind == "bert" else int((labels[:, 1:] != -100).sum())
        # this process holds half the labels of the global batch
        loss = trainer.compute_loss(model, dict(inputs), num_items_in_batch=torch.tensor(2 * count))
    assert float(loss) == pytest.approx(float(mean) / 2, rel=1e-5)
