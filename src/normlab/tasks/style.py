"""Fast feed-forward style transfer (Johnson, Alahi & Fei-Fei 2016), where the norm of the
transformation network is the variable: BatchNorm as published, InstanceNorm as in Ulyanov,
Vedaldi & Lempitsky (2016, "the missing ingredient for fast stylization").

Trains the network on random crops of content images against a perceptual loss with one style
image. Held-out images are scored in eval mode (BatchNorm with running statistics,
InstanceNorm per image), so every norm is measured the way it would be used. The untrained
network is scored the same way before the first step (``init/*``), which gives the style-loss
drop ``1 - style / init_style``. A grid of the held-out images (content | stylized) goes to W&B
at the end of every epoch, and to ``style_grid.png`` in the run directory when training ends.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from normlab.data.images import grid, save_png, to_uint8
from normlab.data.style_module import build_style_datamodule
from normlab.errors import ConfigError
from normlab.models import build_model
from normlab.models.loss_net import build_loss_network
from normlab.tasks import optim
from normlab.tasks.perceptual import PerceptualLoss

log = logging.getLogger(__name__)
GRID_FILE = "style_grid.png"


class StyleTransfer(L.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        loss: PerceptualLoss,
        style: torch.Tensor,
        optim_cfg: dict,
        global_batch: int,
        net_cfg: dict,
        eval_batch: int = 16,
    ):
        super().__init__()
        self.model, self.loss, self.optim_cfg, self.global_batch = model, loss, optim_cfg, global_batch
        self.net_cfg, self.eval_batch = net_cfg, eval_batch  # net_cfg rebuilds the model from a checkpoint
        self.register_buffer("style", style, persistent=False)  # (1, 3, h, w) in [0, 1]
        self.init_terms: dict[str, float] | None = None
        # Checkpoints leave the fixed loss network out (see on_save_checkpoint), so loading must
        # accept its absence.
        self.strict_loading = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def on_fit_start(self):
        self.loss.set_style(self.style)  # Gram targets, once, on the training device

    def on_test_start(self):
        self.loss.set_style(self.style)

    def terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.loss(self(x), x)

    def _log_terms(self, stage: str, terms: dict[str, torch.Tensor], n: int) -> None:
        on_step = stage == "train"
        for k, v in terms.items():
            self.log(
                f"{stage}/{k}",
                v,
                on_step=on_step and k == "loss",
                on_epoch=True,
                batch_size=n,
                sync_dist=not on_step,
                prog_bar=k == "loss",
            )
        if not on_step and self.init_terms:
            # Linear in the style loss, so its batch-weighted mean is 1 - mean(style) / init_style.
            self.log(
                f"{stage}/style_drop",
                1 - terms["style"] / self.init_terms["style"],
                on_epoch=True,
                batch_size=n,
                sync_dist=True,
            )

    def training_step(self, batch, batch_idx):
        x, _ = batch
        terms = self.terms(x)
        self._log_terms("train", terms, len(x))
        return terms["loss"]

    def validation_step(self, batch, batch_idx):
        self._log_terms("val", self.terms(batch[0]), len(batch[0]))

    def test_step(self, batch, batch_idx):
        self._log_terms("test", self.terms(batch[0]), len(batch[0]))

    @torch.no_grad()
    def held_out_terms(self, identity: bool = False) -> dict[str, float]:
        """The loss terms on the held-out images, in eval mode, averaged over images; with
        ``identity``, of the photographs themselves, as if the network returned its input."""
        was_training = self.model.training
        self.model.eval()
        images = self.trainer.datamodule.held_out.to(self.device)
        sums: dict[str, float] = {}
        for chunk in images.split(self.eval_batch):
            terms = self.loss(chunk, chunk) if identity else self.terms(chunk)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v) * len(chunk)
        self.model.train(was_training)
        return {k: v / len(images) for k, v in sums.items()}

    def on_train_start(self):
        if self.init_terms is None:  # a resumed run keeps the numbers of the untrained network
            self.init_terms = self.held_out_terms()
        for k, v in self.init_terms.items():
            self.log(f"init/{k}", v, on_epoch=True, sync_dist=False)
        # How far the photographs themselves are from the style: the bar a stylization must clear.
        self.log("photo/style", self.held_out_terms(identity=True)["style"], on_epoch=True, sync_dist=False)

    @torch.no_grad()
    def stylize_held_out(self) -> tuple[torch.Tensor, torch.Tensor]:
        was_training = self.model.training
        self.model.eval()
        content = self.trainer.datamodule.held_out.to(self.device)
        stylized = torch.cat([self(chunk) for chunk in content.split(self.eval_batch)])
        self.model.train(was_training)
        return content.cpu(), stylized.cpu()

    def held_out_grid(self) -> tuple[torch.Tensor, str]:
        content, stylized = self.stylize_held_out()
        rows = [[c, s] for c, s in zip(content, stylized)]
        rows[0].append(self.style[0].cpu())
        norm = self.net_cfg["norm"]["name"]
        img = grid(rows, header=["content", f"stylized (norm={norm}, step {self.global_step})", "style"])
        return img, norm

    def on_train_epoch_end(self):
        # Every epoch, so W&B's image slider shows the stylization as it develops.
        wandb = [lg for lg in self.loggers if type(lg).__name__ == "WandbLogger"]
        if not wandb or not self.trainer.is_global_zero:
            return
        img, norm = self.held_out_grid()
        for logger in wandb:
            logger.log_image(
                key="held_out/stylized",
                images=[to_uint8(img).permute(1, 2, 0).numpy()],
                caption=[f"content | stylized, norm={norm}, epoch {self.current_epoch}"],
                step=self.global_step,
            )

    def on_train_end(self):
        if not self.trainer.is_global_zero:
            return
        img, _ = self.held_out_grid()
        path = save_png(img, Path(self.trainer.default_root_dir) / GRID_FILE)
        log.info("held-out images, content | stylized: %s", path)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The loss network is fixed (ImageNet or seeded weights) and rebuilt by every run; saving it
        # would add 59 MB of VGG-16 to every checkpoint.
        sd = checkpoint["state_dict"]
        for k in [k for k in sd if k.startswith("loss.")]:
            del sd[k]
        checkpoint["style_net"] = self.net_cfg
        checkpoint["init_terms"] = self.init_terms

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.init_terms = checkpoint.get("init_terms")

    def configure_optimizers(self):
        # Only the transformation network is optimised; the loss network has no trainable weights.
        return optim.configure(self.model, self.trainer, self.optim_cfg, self.global_batch)


def build_style(cfg: DictConfig, world_size: int):
    if cfg.model.name != "style_net":
        raise ConfigError(
            f"task=style trains a transformation network, not model={cfg.model.name}. Fix: set model=style_net."
        )
    data = build_style_datamodule(OmegaConf.to_container(cfg.data, resolve=True), cfg.seed)
    data.setup()
    net_cfg = {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "norm": OmegaConf.to_container(cfg.norm, resolve=True),
    }
    model = build_model(net_cfg["model"], net_cfg["norm"])
    lc = cfg.task.loss
    net = build_loss_network(lc.network, [lc.content_layer, *lc.style_layers], lc.get("width", 1.0))
    loss = PerceptualLoss(
        net,
        lc.content_layer,
        list(lc.style_layers),
        lc.content_weight,
        lc.style_weight,
        lc.tv_weight,
        lc.get("gram", "plain"),
    )
    optim_cfg = OmegaConf.to_container(cfg.task.optim, resolve=True)
    module = StyleTransfer(
        model, loss, data.style, optim_cfg, cfg.data.batch * world_size, net_cfg, cfg.data.get("eval_batch", 16)
    )
    return module, data
