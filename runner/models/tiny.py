"""A tiny random Llama checkpoint, generated offline, for fast tests and CPU smoke runs.

Nothing is downloaded: the tokenizer is a byte-level BPE trained on the corpus below and
the weights come from a fixed seed, so every machine builds the same bytes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from runner.models.cache import ProvisionTime, build_atomically

log = logging.getLogger(__name__)

# Bump the suffix whenever anything below changes what gets built: old caches stay valid.
TINY_NAME = "tiny-llama-v1"
VOCAB_SIZE = 512
MAX_POSITIONS = 1024  # its context length: prompt plus new tokens
SEED = 0
SPECIAL_TOKENS = ["<s>", "</s>", "<pad>", "<unk>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

# Varied prose plus code so merges cover common English and Python fragments; the exact
# text only matters in that changing it changes the checkpoint (bump TINY_NAME then).
CORPUS = [
    "The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins "
    "with a single step. It was the best of times, it was the worst of times.",
    "Large language models predict the next token given the previous ones. Inference cost "
    "depends on the batch size, the prompt length, the number of generated tokens, the "
    "precision of the weights and how well the hardware is used.",
    "Paris is the capital of France. Berlin is the capital of Germany. Rome, Madrid and "
    "Lisbon are also capitals in Europe. The river flows through the city to the sea.",
    "Please summarise the following report in three sentences. Answer the question "
    "briefly and explain your reasoning. What is the time? Where are we going today?",
    "She opened the window, and the morning light filled the room. They walked along the "
    "beach, talking about music, science, history and the weather for the coming week.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 1000 3.14 2024-01-01 12:30 50% $20 #1 @user",
    "def fibonacci(n: int) -> int:\n"
    '    """Return the n-th Fibonacci number."""\n'
    "    a, b = 0, 1\n"
    "    for _ in range(n):\n"
    "        a, b = b, a + b\n"
    "    return a\n",
    "import os\nimport sys\n\n\nclass Runner:\n"
    "    def __init__(self, config):\n"
    "        self.config = config\n"
    "        self.results = []\n\n"
    "    def run(self):\n"
    "        for item in self.config.get('items', []):\n"
    "            if item is None:\n"
    "                continue\n"
    "            self.results.append(item * 2)\n"
    "        return {'count': len(self.results), 'ok': True}\n",
    "for (int i = 0; i < n; ++i) { sum += x[i]; }  // C loop\n"
    "SELECT name, value FROM results WHERE value > 10 ORDER BY name;\n",
]


def _train_tokenizer():
    """Train the byte-level BPE; byte-level means any text encodes without unknowns."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        # The full byte alphabet even for bytes absent from the corpus (e.g. emoji).
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    bos = tok.token_to_id("<s>")
    # Llama-style: prompts start with BOS so the model sees what it would in the wild.
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    return tok


def _build(out: Path) -> None:
    import torch
    from transformers import (
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(),
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="left",  # decoder-only batching: pad on the left so outputs line up
        model_max_length=MAX_POSITIONS,
        chat_template=CHAT_TEMPLATE,
    )
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=False,
        dtype="float32",
        **ids,
    )
    # fork_rng: seed for reproducible weights without disturbing the caller's RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = LlamaForCausalLM(config).to(torch.float32)
    model.generation_config = GenerationConfig(**ids)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def ensure_tiny(root: Path, spent: ProvisionTime | None = None) -> Path:
    """Return ``root/tiny-llama-v1``, building it (about a second) on first use
    (the build's time added to ``spent``)."""
    target = Path(root) / TINY_NAME
    return build_atomically(target, _build, spent)
