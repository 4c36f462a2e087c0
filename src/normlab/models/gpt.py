"""A small GPT: a decoder-only Transformer language model.

The Transformer decoder of Vaswani et al. (2017, "Attention Is All You Need") without the
encoder, as in GPT-2 (Radford et al. 2019, "Language Models are Unsupervised Multitask
Learners"): token and learned position embeddings, ``n_layer`` blocks of causal multi-head
self-attention and a 4x-wide MLP on a residual stream, and a linear head to next-token logits,
tied to the token embedding (Press & Wolf 2017).

Every norm comes from the factory's ``norm_layer`` with layout ``nlc``: the activations are
``(B, T, C)``, batch, tokens, channels. Where the norms sit (Xiong et al. 2020, Fig. 1):

- ``pre`` (GPT-2): ``x = x + attn(norm_1(x)); x = x + mlp(norm_2(x))``, and a final norm
  before the head, since the residual stream itself is never normalized;
- ``post`` (Vaswani et al. 2017): ``x = norm_1(x + attn(x)); x = norm_2(x + mlp(x))``; the
  last block already ends in a norm, so there is no final one.

No ReLU follows a norm here, so a norm that carries its own activation (frn, evonorm_b0/s0)
keeps it in every place: unlike the ResNets, there is no reference that builds a Transformer
with their affine-only form (``apply_act=False``, which is gamma x + beta for EvoNorm).

What each norm means on tokens, and whether a token can see the future through it:

==========  ==========================================  =========================================
norm        statistics over                             later tokens visible?
==========  ==========================================  =========================================
layer, rms  the C channels of one token                 never
group       the C/G channels of each group, per token   never
none        nothing                                     never
batch       (B, T) per channel: all tokens of all       in training; not in eval (running stats)
            sequences of the batch
bln         (N) per token and channel, and C per token  other sequences' tokens at the same position
bln_pooled  (1/B) layer + (1 - 1/B) batch               in training; not in eval (running stats)
instance    the T tokens of one sequence, per channel   in training, and in eval unless
                                                        ``track_running_stats=true``
zoo         ``axes["nlc"]`` of each layer               batch_renorm, ghost_batch: as batch; frn,
                                                        evonorm_b0, switchable, batch_instance,
                                                        cond_instance: in training and in eval;
                                                        evonorm_s0, layer2d, group1: never
==========  ==========================================  =========================================

Causal attention alone does not make a model causal: a norm whose statistics span tokens
passes information from token t+1 to token t. ``GPT`` logs a warning at build time when its
norm does this; the LM task evaluates in eval mode, where running statistics are causal-safe.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from normlab.errors import ConfigError
from normlab.norms import NORMS
from normlab.norms.contract import declared, mixes_tokens
from normlab.norms.registry import NormLayer, knobs_of

log = logging.getLogger(__name__)


def token_mixing(norm: nn.Module) -> tuple[bool, bool]:
    """Whether a norm's statistics span several tokens: (in training mode, in eval mode).

    In training, as the layer declares (``contract.mixes_tokens``). In eval mode those with running
    statistics use them instead, which no token influences, unless the layer declares
    ``instance_stats``: per-sequence statistics over L in every mode (frn, evonorm_b0, switchable,
    batch_instance, cond_instance).
    """
    in_train = mixes_tokens(norm)
    return in_train, in_train and (declared(norm, "instance_stats") or declared(norm, "running_mean") is None)


def warn_if_not_causal(norm: nn.Module) -> None:
    in_train, in_eval = token_mixing(norm)
    if not in_train:
        return
    name = next((k for k, cls in NORMS.items() if type(norm) is cls), type(norm).__name__)
    where = declared(norm, "axes").get("nlc", "several tokens")
    if in_eval:
        fix = (
            "Set norm.track_running_stats=true for causal evaluation."
            if "track_running_stats" in knobs_of(name)
            else "Its val/test losses are not those of a causal model."
        )
        log.warning(
            "norm '%s' normalizes over %s: every token sees statistics of later tokens, in training AND in "
            "eval (statistics of the sequence itself), so val/test losses are not causal. %s",
            name,
            where,
            fix,
        )
    else:
        log.warning(
            "norm '%s' normalizes over %s: in training every token sees statistics of later tokens (train "
            "loss is not causal); val/test run in eval mode on running statistics, which are causal.",
            name,
            where,
        )


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float):
        super().__init__()
        self.n_head, self.dropout = n_head, dropout
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)  # q, k, v for all heads in one matmul
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        # softmax(q k^T / sqrt(hs) + causal mask) v, one fused kernel; token t attends to tokens <= t.
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side again
        return self.resid_drop(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, n_embd: int, dropout: float):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.c_proj = nn.Linear(4 * n_embd, n_embd)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.c_proj(F.gelu(self.c_fc(x))))  # (B, T, 4C) inside, (B, T, C) out


class Block(nn.Module):
    def __init__(self, norm_layer: NormLayer, n_embd: int, n_head: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.pre_norm = pre_norm
        self.norm_1, self.attn = norm_layer(n_embd), CausalSelfAttention(n_embd, n_head, dropout)
        self.norm_2, self.mlp = norm_layer(n_embd), MLP(n_embd, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.attn(self.norm_1(x))
            return x + self.mlp(self.norm_2(x))
        x = self.norm_1(x + self.attn(x))  # post-LN: normalize after the residual add
        return self.norm_2(x + self.mlp(x))


class GPT(nn.Module):
    def __init__(
        self,
        norm_layer: NormLayer,
        vocab_size: int,
        n_layer: int = 4,
        n_head: int = 4,
        n_embd: int = 128,
        block_size: int = 128,
        dropout: float = 0.0,
        tie_weights: bool = True,
        norm_position: str = "pre",
    ):
        super().__init__()
        if norm_position not in ("pre", "post"):
            raise ConfigError(f"unknown model.norm_position '{norm_position}'. Fix: set it to pre or post.")
        if n_embd % n_head:
            raise ConfigError(
                f"model.n_embd={n_embd} is not divisible by model.n_head={n_head}. "
                f"Fix: pick n_head from {[h for h in range(1, n_embd + 1) if n_embd % h == 0]}."
            )
        self.block_size = block_size
        self.wte = nn.Embedding(vocab_size, n_embd)  # token embedding
        self.wpe = nn.Embedding(block_size, n_embd)  # learned position embedding
        self.drop = nn.Dropout(dropout)
        pre = norm_position == "pre"
        self.blocks = nn.ModuleList(Block(norm_layer, n_embd, n_head, dropout, pre) for _ in range(n_layer))
        self.norm_f = norm_layer(n_embd) if pre else nn.Identity()
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        if tie_weights:
            self.lm_head.weight = self.wte.weight  # one matrix reads and writes tokens (Press & Wolf 2017)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                # GPT-2: residual branches scaled by 1/sqrt(2 n_layer), so the stream's variance
                # does not grow with depth (two branches per block).
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))
        warn_if_not_causal(self.blocks[0].norm_1)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # Norm layers keep their own init (gamma = 1, beta = 0).
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` token ids -> ``(B, T, vocab_size)`` logits of the next token at every position."""
        B, T = idx.shape
        if T > self.block_size:
            raise ConfigError(
                f"sequence of {T} tokens is longer than model.block_size={self.block_size}. "
                f"Fix: crop the input or raise model.block_size."
            )
        pos = torch.arange(T, device=idx.device)  # (T,)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C)
        for block in self.blocks:
            x = block(x)  # (B, T, C)
        return self.lm_head(self.norm_f(x))  # (B, T, vocab_size)

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Append ``max_new_tokens`` sampled tokens to ``idx`` ``(B, T)``; call in eval mode."""
        for _ in range(max_new_tokens):
            context = idx[:, -self.block_size :]  # the model has positions for block_size tokens only
            logits = self(context)[:, -1, :] / temperature  # (B, vocab_size)
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            next_id = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)  # (B, 1)
            idx = torch.cat((idx, next_id), dim=1)
        return idx
