"""Run by test_clients.py under a real launcher: make_loader inside other people's training code.

    python tests/client_worker.py lightning|accelerate|torchvision|timm|nodes SETS OUT

SETS is a JSON file of make_loader arguments for ``train`` and ``val`` (sets whose labels name their
samples, see helpers.write_id_sets). No rank is passed: the loader finds it. Every rank writes
``OUT/<client>-rank<R>.json``: the sample ids it trained on per epoch, the val ids per epoch, and
what the loop computed.
"""

import json
import os
import sys

import torch
import torch.nn.functional as F

from dali_mixup import make_loader

EPOCHS = 3
TRAIN_CLASSES = 97  # test_clients.py: every train sample its own class


def loaders(sets, **train_kwargs):
    common = {"device": "cpu", "num_threads": 1, "crop_size": 32, "seed": 1}
    train = make_loader(split="train", batch_size=8, **common, **sets["train"], **train_kwargs)
    val = make_loader(split="val", batch_size=16, **common, **sets["val"])
    return train, val


def model_for(loader):
    torch.manual_seed(0)
    return torch.nn.Linear(3 * 32 * 32, loader.num_classes)


def write(out, client, rank, record):
    with open(os.path.join(out, f"{client}-rank{rank}.json"), "w") as f:
        json.dump(record, f)


def lightning(sets, out):
    """A LightningModule whose dataloader hooks return make_loader(...): Lightning's DDP on 2 CPU processes."""
    import lightning as L

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.model = torch.nn.Linear(3 * 32 * 32, TRAIN_CLASSES)
            self.record = {"train": [[] for _ in range(EPOCHS)], "val": [[] for _ in range(EPOCHS)], "env": {
                name: os.environ.get(name) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}}

        # The hooks run once the process group is up; a loader made in __init__ could not find its rank.
        def train_dataloader(self):
            return loaders(sets)[0]

        def val_dataloader(self):
            return loaders(sets)[1]

        def training_step(self, batch, batch_idx):
            images, targets = batch
            self.record["train"][self.current_epoch] += targets.tolist()
            return F.cross_entropy(self.model(images.flatten(1)), targets)

        def validation_step(self, batch, batch_idx):
            images, labels = batch
            if not self.trainer.sanity_checking:  # the sanity check reads 2 batches and breaks off
                self.record["val"][self.current_epoch] += labels.tolist()
            self.log("val_loss", F.cross_entropy(self.model(images.flatten(1)), labels), sync_dist=True)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    module = Module()
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=EPOCHS, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module)
    write(out, "lightning", trainer.global_rank, module.record)


def accelerate(sets, out):
    """A Hugging Face Accelerate loop; the loader may go through accelerator.prepare (it comes back as it is)."""
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    train, val = loaders(sets)
    model = model_for(train)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model, optimizer, train = accelerator.prepare(model, optimizer, train)
    record = {"train": [], "val": [], "correct": []}
    for epoch in range(EPOCHS):
        train.set_epoch(epoch)
        seen = []
        for images, targets in train:
            loss = F.cross_entropy(model(images.flatten(1)), targets)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            seen += targets.tolist()
        record["train"].append(seen)
        labels_seen, correct = [], torch.zeros(())
        with torch.no_grad():
            for images, labels in val:
                correct += (model(images.flatten(1)).argmax(1) == labels).sum()
                labels_seen += labels.tolist()
        # The ranks' val batches differ in size (every sample once: 16 + 17 here), so sum, not gather.
        record["val"].append(labels_seen)
        record["correct"].append(accelerator.reduce(correct, reduction="sum").item())
    write(out, "accelerate", accelerator.process_index, record)


def torchvision(sets, out):
    """torchvision's references/classification train.py loop, as written there: the sampler's set_epoch, metrics
    weighted by the batch's size, and the check that the val set was seen whole."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    data_loader, data_loader_test = loaders(sets)
    train_sampler = data_loader.sampler
    model = model_for(data_loader)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    criterion = torch.nn.CrossEntropyLoss()
    record = {"train": [], "val": [], "acc1": []}
    for epoch in range(EPOCHS):
        train_sampler.set_epoch(epoch)
        seen = []
        for image, target in data_loader:
            loss = criterion(model(image.flatten(1)), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += target.tolist()
        record["train"].append(seen)
        num_processed_samples, hits, labels_seen = 0, 0.0, []
        with torch.inference_mode():
            for image, target in data_loader_test:
                acc1 = (model(image.flatten(1)).argmax(1) == target).float().mean() * 100
                batch_size = image.shape[0]
                hits += acc1.item() * batch_size  # the reference's meters["acc1"].update(acc1.item(), n=batch_size)
                num_processed_samples += batch_size
                labels_seen += target.tolist()
        totals = torch.tensor([num_processed_samples, hits], dtype=torch.float64)
        dist.all_reduce(totals)
        assert len(data_loader_test.dataset) == totals[0].item(), "the val set was not seen whole"
        record["val"].append(labels_seen)
        record["acc1"].append(totals[1].item() / totals[0].item())
    write(out, "torchvision", dist.get_rank(), record)
    dist.destroy_process_group()


def _set_loader_epoch(loader, epoch):
    # timm's train.py, as written there
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)
    if hasattr(loader.batch_sampler, "set_epoch"):
        loader.batch_sampler.set_epoch(epoch)
    elif hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)


def timm(sets, out):
    """timm's train.py loop: _set_loader_epoch, mixup switched off on the loader at --mixup-off-epoch, and
    validate's all-reduce of every batch's accuracy (which a rank with fewer batches would hang, and an
    empty batch would make NaN)."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    world_size = dist.get_world_size()
    loader_train, loader_eval = loaders(sets, mixup_alpha=0.2)
    model = model_for(loader_train)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    mixup_off_epoch = 2
    record = {"train": [], "val": [], "top1": [], "mixed": []}
    for epoch in range(EPOCHS):
        _set_loader_epoch(loader_train, epoch)
        if mixup_off_epoch and epoch >= mixup_off_epoch and loader_train.mixup_enabled:
            loader_train.mixup_enabled = False
        seen, mixed = [], False
        for input, target in loader_train:
            loss = torch.sum(-target * F.log_softmax(model(input.flatten(1)), dim=1), dim=1).mean()  # soft targets
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            mixed |= bool((target.max(1).values < 0.999).any())
            seen += target.argmax(1).tolist()  # the sample's id once unmixed (one-hot rows)
        record["train"].append(seen)
        record["mixed"].append(mixed)
        top1_sum, count, labels_seen = 0.0, 0, []
        with torch.inference_mode():
            for input, target in loader_eval:
                acc1 = (model(input.flatten(1)).argmax(1) == target).float().mean() * 100
                dist.all_reduce(acc1)  # timm's utils.reduce_tensor
                acc1 /= world_size
                top1_sum += acc1.item() * input.shape[0]
                count += input.shape[0]
                labels_seen += target.tolist()
        record["val"].append(labels_seen)
        record["top1"].append(top1_sum / count)
    write(out, "timm", dist.get_rank(), record)
    dist.destroy_process_group()


def nodes(sets, out):
    """Two nodes under torchrun's c10d rendezvous: just the train ids of every epoch."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    train, _ = loaders(sets)
    record = {"train": [], "node": os.environ.get("GROUP_RANK")}
    for epoch in range(EPOCHS):
        train.set_epoch(epoch)
        record["train"].append([sample for _, targets in train for sample in targets.tolist()])
    write(out, "nodes", dist.get_rank(), record)
    dist.destroy_process_group()


if __name__ == "__main__":
    client, sets_path, out = sys.argv[1:]
    with open(sets_path) as f:
        sets = json.load(f)
    {"lightning": lightning, "accelerate": accelerate, "torchvision": torchvision, "timm": timm, "nodes": nodes}[client](
        sets, out)
