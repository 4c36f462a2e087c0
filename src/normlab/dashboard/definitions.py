"""One dashboard definition per experiment in conf/experiment/: what it asks and which panels it gets.

A table here rather than a ``dashboard:`` key in each experiment's yaml: the experiment files are
training configs (every key of them reaches the run's config and its hash), and a dashboard
changes nothing a run computes. ``tests/dashboard`` lists conf/experiment/ and fails for a file
without an entry here.

The keys a dashboard groups and filters by are the flat run config of ``run/loggers.py``
(``flat_config``: experiment, norm_name, batch_per_device, base_lr, ...) or nested config paths
(``model.ws``, ``norm.num_groups``, ``model.norm_position``). The runs of one group of the runs
table differ only in their seed, so every mean and spread a panel shows is over seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

from normlab.errors import unknown_name

BATCH = "batch_per_device"  # the x axis of every "against the batch size" panel (log scale)
LR = "base_lr"  # task.optim.lr before linear scaling: the rate an lr sweep varies

# Panel kinds (panels.py builds them), by task.
CLASSIFY = ("headline", "val_curves", "train_loss", "throughput", "parallel")
CLASSIFY_BN = (*CLASSIFY, "batch_stats")  # runs with a batch-dependent norm log the PreciseBN / batch-stats errors
LM = ("headline", "lm_loss", "lm_bpc", "train_loss", "throughput", "parallel")
STYLE = ("headline", "style_loss", "style_images", "train_loss", "throughput", "parallel")


@dataclass(frozen=True)
class Dashboard:
    experiment: str  # the experiment's ``name``: its W&B group and the flat config key ``experiment``
    question: str  # what the experiment asks, one or two sentences
    task: str  # classify | lm | style: which metric names its runs log
    arms: tuple[str, ...]  # config keys of the compared thing; runs are grouped by these (and the batch)
    panels: tuple[str, ...]  # panel kinds, in order (panels.KINDS)
    batch_swept: bool = False  # the sweep varies data.batch: group by it too, and plot against it
    findings: tuple[str, str] | None = None  # (doc, heading text) whose bullet points are the findings
    headline: str | None = None  # the summary metric it is judged by; None: the task's (report.HEADLINE)

    @property
    def group_by(self) -> tuple[str, ...]:
        return (*self.arms, BATCH) if self.batch_swept else self.arms


DASHBOARDS = {
    d.experiment: d
    for d in (
        Dashboard(
            "example",
            "A smoke test of the pipeline: do BatchNorm and GroupNorm train a ResNet-20 on 5,000 MNIST "
            "digits at 8 and 32 images per batch?",
            "classify",
            ("norm_name",),
            CLASSIFY_BN,
            batch_swept=True,
        ),
        Dashboard(
            "gn_vs_bn",
            "Does BatchNorm's error grow as the images per device shrink while GroupNorm's stays flat "
            "(Wu & He 2018, Figure 1)?",
            "classify",
            ("norm_name",),
            CLASSIFY_BN,
            batch_swept=True,
            findings=("docs/results.md", "`gn_vs_bn`"),
        ),
        Dashboard(
            "gn_vs_bn_lr",
            "Which base learning rate does each arm win with at each batch size, judged on val/err "
            "(the sweep that picks the rates of gn_vs_bn)?",
            "classify",
            ("norm_name", LR),
            CLASSIFY_BN,
            batch_swept=True,
            headline="val/err.min",
        ),
        Dashboard(
            "gn_vs_bn_full",
            "GroupNorm vs BatchNorm over images per device at full scale (ResNet-18, all of "
            "CIFAR-10, 100 epochs): does the budget result hold, and does plain GroupNorm catch up?",
            "classify",
            ("norm_name", "model.ws"),
            CLASSIFY_BN,
            batch_swept=True,
        ),
        Dashboard(
            "gn_groups",
            "How does GroupNorm's error depend on the number of groups, from one group (LayerNorm) "
            "to one channel per group in the first stage (Wu & He 2018, Table 3)?",
            "classify",
            ("norm.num_groups",),
            CLASSIFY,
            findings=("docs/results.md", "`gn_groups`"),
        ),
        Dashboard(
            "norms_vision",
            "Wu & He 2018, Table 1: do BN < GN < LN < IN hold on one ResNet at 32 images per batch, "
            "each at its own learning rate, with and without weight standardization?",
            "classify",
            ("norm_name", "model.ws"),
            CLASSIFY_BN,
            findings=("docs/results.md", "`norms_vision`"),
        ),
        Dashboard(
            "norms_vision_lr",
            "Which base learning rate does each of Table 1's arms win with, judged on val/err "
            "(the sweep that picks the rates of norms_vision)?",
            "classify",
            ("norm_name", "model.ws", LR),
            CLASSIFY_BN,
            headline="val/err.min",
        ),
        Dashboard(
            "norms_vision_long",
            "Do plain GN, LN and IN close their gap to BN in norms_vision when they train for 16 epochs "
            "instead of 4, each at the rate norms_vision_lr chose?",
            "classify",
            ("norm_name",),
            CLASSIFY_BN,
            findings=("docs/results.md", "`norms_vision_long`"),
        ),
        Dashboard(
            "norms_zoo",
            "Every other image norm (RMSNorm, BLN, BatchRenorm, ghost BN, FRN, EvoNorm, switchable, ...) "
            "on norms_vision's ResNet and recipe: where does each land?",
            "classify",
            ("norm_name",),
            CLASSIFY_BN,
            findings=("docs/results.md", "`norms_zoo`"),
        ),
        Dashboard(
            "lm_norms",
            "Which norm trains the small GPT on Shakespeare best, in eval-mode (causal) losses, at each norm position?",
            "lm",
            ("norm_name", "model.norm_position"),
            LM,
            findings=("docs/results_lm.md", "`lm_norms`"),
        ),
        Dashboard(
            "style_norms",
            "InstanceNorm vs BatchNorm (and others) in the style transfer network at batch 4 and "
            "1 (Ulyanov et al. 2016): which stylizes held-out photographs best?",
            "style",
            ("norm_name",),
            STYLE,
            batch_swept=True,
            findings=("docs/results_style.md", "Norms and batch sizes"),
        ),
    )
}


def dashboard(experiment: str) -> Dashboard:
    """The definition of one experiment; a one-line ConfigError for a name without one."""
    if experiment not in DASHBOARDS:
        raise unknown_name("experiment", experiment, DASHBOARDS, "--experiment")
    return DASHBOARDS[experiment]
