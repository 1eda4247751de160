// Translation unit that owns the precompiled header of torch/torch.h (see cmake/qsched.cmake).
