"""The C engine (libemote's model + session) for the Python tools, via ctypes.

    with CEngine("model.safetensors", max_batch=32) as engine:
        probs = engine.classify(inputs)       # float32 [N,C,H,W] -> float32 [N,classes]

Loads the same library as tools/preprocess.py (build/release/libemote.so, or $EMOTE_LIB),
so a check through this module runs exactly the code the emote CLI runs.
"""
import ctypes
import os

import numpy as np

from preprocess import _Error, library


def _engine_library():
    lib = library()
    if not hasattr(lib, "_emote_engine_ready"):
        lib.emote_model_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(_Error)]
        lib.emote_model_open.restype = ctypes.c_void_p
        lib.emote_model_close.argtypes = [ctypes.c_void_p]
        lib.emote_model_close.restype = None
        lib.emote_model_num_classes.argtypes = [ctypes.c_void_p]
        lib.emote_model_num_classes.restype = ctypes.c_int
        lib.emote_input_floats.argtypes = [ctypes.c_void_p]
        lib.emote_input_floats.restype = ctypes.c_size_t
        lib.emote_session_new.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Error)]
        lib.emote_session_new.restype = ctypes.c_void_p
        lib.emote_session_free.argtypes = [ctypes.c_void_p]
        lib.emote_session_free.restype = None
        lib.emote_classify.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int,
                                       ctypes.POINTER(ctypes.c_float), ctypes.POINTER(_Error)]
        lib.emote_classify.restype = ctypes.c_int
        lib._emote_engine_ready = True
    return lib


class CEngine:
    """One model file opened by libemote with a session for batches of up to max_batch."""

    def __init__(self, model_path, max_batch=32, threads=1):
        self._lib = _engine_library()
        err = _Error()
        self._model = self._lib.emote_model_open(os.fsencode(model_path), ctypes.byref(err))
        if not self._model:
            raise ValueError(err.message.decode(errors="replace"))
        self._session = self._lib.emote_session_new(self._model, max_batch, threads, ctypes.byref(err))
        if not self._session:
            self._lib.emote_model_close(self._model)
            raise ValueError(err.message.decode(errors="replace"))
        self.max_batch = max_batch
        self.classes = self._lib.emote_model_num_classes(self._model)
        self.input_floats = self._lib.emote_input_floats(self._model)

    def classify(self, inputs):
        """float32 [N, C, H, W] (already preprocessed) -> softmax probabilities [N, classes]."""
        x = np.ascontiguousarray(inputs, dtype=np.float32).reshape(len(inputs), -1)
        if x.shape[1] != self.input_floats:
            raise ValueError(f"inputs have {x.shape[1]} floats per image, the model takes {self.input_floats}")
        probs = np.empty((len(x), self.classes), dtype=np.float32)
        err = _Error()
        for start in range(0, len(x), self.max_batch):
            chunk = x[start:start + self.max_batch]
            out = probs[start:start + len(chunk)]
            status = self._lib.emote_classify(self._session, chunk.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                              len(chunk), out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                              ctypes.byref(err))
            if status != 0:
                raise ValueError(err.message.decode(errors="replace"))
        return probs

    def close(self):
        if self._session:
            self._lib.emote_session_free(self._session)
            self._lib.emote_model_close(self._model)
            self._session = self._model = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
