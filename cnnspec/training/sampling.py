"""Repeated augmentation (`repeated_augment: reps=3`): each image several times in
an epoch, each copy augmented on its own and, with several processes, each on
another one (Hoffer et al. 2020, "Augment your batch"; DeiT and torchvision's
reference RASampler in references/classification/sampler.py).

Takes: the training dataset (only its length is read), the number of processes and
this one's rank, the seed and the repetitions. Returns: a
`torch.utils.data.Sampler` of dataset indices for this process, re-shuffled by
`set_epoch(epoch)`. torch ships no such sampler, so this one is written here, to
the reference's definition: per epoch a permutation from a generator seeded
seed + epoch, each index repeated `reps` times in a row, padded by wrapping to a
multiple of the processes, every num_replicas-th index from this rank on, cut to
the samples per process.

One difference: the reference cuts each process's share to
floor(len(dataset) // 256 * 256 / num_replicas), a rounding for ImageNet-sized sets
that leaves nothing of a set under 256 images; here it is
floor(len(dataset) / num_replicas). For a multiple of 256 the two agree. Either
way an epoch draws as many samples as the dataset holds, about len / reps
distinct images, each seen reps times.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import Sampler


class RepeatedAugmentSampler(Sampler[int]):
    def __init__(self, dataset, num_replicas: int, rank: int, seed: int, reps: int,
                 shuffle: bool = True):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not one of {num_replicas} processes")
        self.size = len(dataset)
        self.num_replicas, self.rank = num_replicas, rank
        self.seed, self.reps, self.shuffle = seed, reps, shuffle
        self.epoch = 0
        # each process's share of the repeated, padded list, and what it keeps
        self.per_replica = math.ceil(self.size * reps / num_replicas)
        self.kept = self.size // num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> list[int]:
        """This process's indices for the current epoch."""
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        repeated = [index for index in order for _ in range(self.reps)]
        padded = self.per_replica * self.num_replicas
        repeated += repeated[:padded - len(repeated)]
        return repeated[self.rank:padded:self.num_replicas][:self.kept]

    def __iter__(self):
        return iter(self.indices())

    def __len__(self) -> int:
        return self.kept
