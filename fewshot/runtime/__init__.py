"""Where a run executes: its processes (``distributed``: the torchrun process group, gradient and
buffer all-reduce; ``launch``: ``--nproc N|auto`` local processes and their threads) and its memory
(``allocator``: glibc malloc's thresholds fixed for a training process).  Part of the application:
the algorithms never import it."""
