"""Build tiny local models + tokenizer (nothing from the Hub).

    python make_tiny.py OUT_DIR      -> OUT_DIR/t5 (T5ForConditionalGeneration), OUT_DIR/bert (BertForSequenceClassification)
"""
import sys
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers, trainers, processors
from transformers import (BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast,
                          T5Config, T5ForConditionalGeneration)

SENTENCES = [
    "the cat sat on the mat", "a dog ran in the park", "the weather is nice today",
    "summaries are short versions of long texts", "translate english to german please",
    "the model learns to copy the input", "tiny models train fast on cpu",
    "xla compiles graphs before running them", "one two three four five six seven",
    "red green blue yellow orange purple", "good movie great acting", "bad movie boring plot",
]


def build_tokenizer(specials, post=None):
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(SENTENCES * 4, trainers.WordLevelTrainer(special_tokens=specials))
    if post is not None:
        tok.post_processor = post(tok)
    return tok


def main(out: Path):
    out.mkdir(parents=True, exist_ok=True)
    # --- T5 (seq2seq) ---
    t5tok = build_tokenizer(["<pad>", "</s>", "<unk>"],
                            post=lambda t: processors.TemplateProcessing(
                                single="$A </s>", pair="$A </s> $B </s>",
                                special_tokens=[("</s>", t.token_to_id("</s>"))]))
    fast = PreTrainedTokenizerFast(tokenizer_object=t5tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    cfg = T5Config(vocab_size=len(fast), d_model=32, d_ff=64, d_kv=8, num_heads=2, num_layers=2,
                   num_decoder_layers=2, pad_token_id=fast.pad_token_id, eos_token_id=fast.eos_token_id,
                   decoder_start_token_id=fast.pad_token_id)
    T5ForConditionalGeneration(cfg).save_pretrained(out / "t5")
    fast.save_pretrained(out / "t5")
    # --- BERT (classification) ---
    btok = build_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "<unk>"],
                           post=lambda t: processors.TemplateProcessing(
                               single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                               special_tokens=[("[CLS]", t.token_to_id("[CLS]")), ("[SEP]", t.token_to_id("[SEP]"))]))
    bfast = PreTrainedTokenizerFast(tokenizer_object=btok, pad_token="[PAD]", unk_token="<unk>",
                                    cls_token="[CLS]", sep_token="[SEP]")
    bcfg = BertConfig(vocab_size=len(bfast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, max_position_embeddings=64, num_labels=2,
                      pad_token_id=bfast.pad_token_id)
    BertForSequenceClassification(bcfg).save_pretrained(out / "bert")
    bfast.save_pretrained(out / "bert")
    print(out)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/xla-tiny"))
