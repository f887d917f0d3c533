# emote — see README.md. `make` builds ./emote and libemote.a; `make check` runs every test.
PYTHON      ?= /usr/bin/python3
CC          ?= cc
PREFIX      ?= /usr/local
DESTDIR     ?=
BUILD       ?= build/release
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Iinclude -Isrc -isystem src/third_party/stb
CFLAGS      ?= -O2 -fvect-cost-model=cheap -g
LDLIBS      := -lopenblas -lcjson -ljpeg -lm -lpthread
# ./emote links OpenBLAS statically where libopenblas-dev ships libopenblas.a (Debian's does):
# loading and relocating the shared library (12,000 symbol relocations, and libgfortran and
# libquadmath with it) cost every process 1.2-1.8 ms of CPU, a fifth of a one-image run
# (README, *Start-up: one image per process*). The same DYNAMIC_ARCH build, kernels and
# OPENBLAS_CORETYPE; the binary grows by 25 MB of kernels that are mapped, not read.
# BLAS_STATIC= links the shared library.
BLAS_STATIC ?= $(abspath $(filter /%,$(shell $(CC) -print-file-name=libopenblas.a 2>/dev/null)))
EMOTE_LDLIBS := $(if $(BLAS_STATIC),$(BLAS_STATIC) $(filter-out -lopenblas,$(LDLIBS)),$(LDLIBS))
MODEL       ?= models/emote-fer2013.safetensors
# Debian packages: to build; to run the tests (valgrind, and numpy/PIL to make test images);
# for the tools (training, fixtures, benchmarks). python3-onnx is for tools/export_onnx.py,
# whose test runs in `make check`. ONNX Runtime (the benchmark's peer and the exporter's
# check) also needs node and npm; machines that ship them outside Debian's packages
# conflict with Debian's npm, so they are not listed here: `make bench` skips ONNX Runtime
# and tests/cli_export_onnx.sh skips its check where they are missing (.ci/run installs
# Debian's nodejs and npm when a machine has neither).
DEB_BUILD   := build-essential libopenblas-dev libcjson-dev libjpeg62-turbo-dev
DEB_TEST    := $(DEB_BUILD) parallel valgrind python3-numpy python3-pil python3-onnx python3-yaml util-linux pkg-config
DEB_TOOLS   := $(DEB_TEST) python3-torch g++
DEB_SCALE   := $(DEB_TEST) slurm-wlm munge

LIB_SRC := $(wildcard src/*.c src/layers/*.c src/image/*.c src/faces/*.c)
CLI_SRC := $(wildcard src/cli/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/*.c)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)
# The unit tests also see the CLI's pieces (tests/test_options.c reads the option tables).
TEST_CLI_OBJ := $(filter-out $(BUILD)/src/cli/main.o,$(CLI_OBJ))
VERSION     := 0.1.0
COMMIT      := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)

# Built-in models, NAME=FILE, the default first: those whose file exists are embedded in the
# binary (src/embed_models.sh); libemote.a's src/no_builtin_model.c has none.
BUILTIN_MODELS ?= fer2013=$(MODEL) ferplus=models/emote-ferplus.safetensors \
  fer2013-faces=models/emote-fer2013-faces.safetensors yunet=models/yunet.safetensors
BUILTIN_PRESENT := $(foreach m,$(BUILTIN_MODELS),$(if $(wildcard $(lastword $(subst =, ,$(m)))),$(m)))
BUILTIN_FILES := $(foreach m,$(BUILTIN_PRESENT),$(lastword $(subst =, ,$(m))))
BUILTIN_OBJ := $(if $(BUILTIN_PRESENT),$(BUILD)/builtin_models.o)

.PHONY: .FORCE all fuzz-replay deps-build deps-test deps-tools check check-scale bench bench-pipeline model fixtures install clean fuzz bench-decode bench-faces model-ferplus model-faces model-ferplus-faces eval-photos eval-photos-peers

all: deps-build emote libemote.a

emote: $(BUILD)/emote
	cp $< $@
libemote.a: $(BUILD)/libemote.a
	cp $< $@

$(BUILD)/libemote.a: $(LIB_OBJ)
	rm -f $@
	ar rcs $@ $^
$(BUILD)/libemote.so: $(LIB_SRC) $(wildcard src/*.h src/*/*.h include/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -fPIC -shared -o $@ $(LIB_SRC) $(LDLIBS)
$(BUILD)/emote: $(CLI_OBJ) $(BUILTIN_OBJ) $(BUILD)/libemote.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILTIN_OBJ) $(BUILD)/libemote.a $(EMOTE_LDLIBS)
$(BUILD)/test_unit: $(TEST_OBJ) $(TEST_CLI_OBJ) $(BUILTIN_OBJ) $(BUILD)/libemote.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(TEST_OBJ) $(TEST_CLI_OBJ) $(BUILTIN_OBJ) $(BUILD)/libemote.a $(LDLIBS)

$(BUILD)/check_model: tools/check_model.c src/no_builtin_model.c $(BUILD)/libemote.a
	$(CC) $(CFLAGS_BASE) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c $(wildcard include/*.h src/*.h src/*/*.h tests/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) $(OBJ_FLAGS) -c -o $@ $<
# Sanitizer exclusions for the pinned stb copies, which stay unedited: stb_image_write's
# JPEG writer (used by tests) shifts negative ints left (-fsanitize=shift); stb_image_resize2
# packs its filter coefficients with deliberately unaligned 8-byte copies (STBIR_MOVE_2, fine
# on x86 and ARMv8), and gcc's object-size check misreads its `(k==0 ? a : b)[n]` table of
# gather functions, so alignment and object-size checks are off for resize.c only.
STB_RESIZE_FLAGS := -fno-sanitize=alignment,object-size
$(BUILD)/src/image/resize.o: OBJ_FLAGS := $(STB_RESIZE_FLAGS)
$(BUILD)/src/image/stb_write.o: OBJ_FLAGS := -fno-sanitize=shift
# --version names the commit: version.o is rebuilt every time.
$(BUILD)/src/cli/version.o: CFLAGS_BASE += -DEMOTE_VERSION='"$(VERSION)"' -DEMOTE_COMMIT='"$(COMMIT)"'
$(BUILD)/src/cli/version.o: .FORCE
.FORCE:
$(BUILD)/builtin_models.o: src/embed_models.sh $(BUILTIN_FILES) Makefile $(BUILD)/check_model
	@mkdir -p $(@D)
	$(BUILD)/check_model $(BUILTIN_FILES)
	sh src/embed_models.sh $(BUILTIN_PRESENT) > $(BUILD)/builtin_models.S
	$(CC) -c -o $@ $(BUILD)/builtin_models.S

# libFuzzer targets, one per reader: tests/fuzz/fuzz_<reader>.c -> build/fuzz/fuzz_<reader>,
# built with clang, ASan and UBSan over the library. FUZZ_SECONDS=N also runs each for N
# seconds on its corpus (tests/fuzz/corpus/<reader>, committed seeds and finds). One by hand:
#   build/fuzz/fuzz_image -max_len=65536 tests/fuzz/corpus/image
FUZZ_CC      ?= clang
FUZZ_SAN     := -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN     := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=build/fuzz/obj/%.o)
FUZZ_SECONDS ?=
FUZZ_ARGS    ?= -rss_limit_mb=2048 -timeout=10

build/fuzz/obj/%.o: %.c $(wildcard include/*.h src/*.h src/*/*.h)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CFLAGS_BASE) -g -O1 -fsanitize=fuzzer-no-link $(FUZZ_SAN) $(OBJ_FLAGS) -c -o $@ $<
build/fuzz/obj/src/image/resize.o: OBJ_FLAGS := $(STB_RESIZE_FLAGS)
build/fuzz/obj/src/image/stb_write.o: OBJ_FLAGS := -fno-sanitize=shift
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIB_OBJ)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CFLAGS_BASE) -g -O1 -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $< $(filter %.o,$^) $(LDLIBS)
# Readers of the CLI's own that a target needs besides the library.
build/fuzz/fuzz_record_file: build/fuzz/obj/src/cli/record_file.o
# Kept between runs (make would delete them as intermediate files of the pattern rule).
.SECONDARY: $(FUZZ_LIB_OBJ)

# The same targets without libFuzzer, for any compiler: tests/fuzz/replay_main.c hands each file
# named to LLVMFuzzerTestOneInput. Built in $(BUILD) with its CFLAGS against its objects;
# `make check` builds them in its sanitizer build and replays every committed corpus:
#   build/asan-clang/fuzz_replay/fuzz_image tests/fuzz/corpus/image/*
FUZZ_REPLAY := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz_replay/%)
fuzz-replay: $(FUZZ_REPLAY)
$(BUILD)/fuzz_replay/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/replay_main.c $(BUILD)/libemote.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.o,$^) $(BUILD)/libemote.a $(LDLIBS)
$(BUILD)/fuzz_replay/fuzz_record_file: $(BUILD)/src/cli/record_file.o

fuzz: $(FUZZ_BIN)
ifneq ($(FUZZ_SECONDS),)
	@for t in $(FUZZ_BIN); do \
	  name=$${t#build/fuzz/fuzz_}; mkdir -p tests/fuzz/corpus/$$name build/fuzz/new/$$name; \
	  echo "== $$t: $(FUZZ_SECONDS) s"; \
	  $$t $(FUZZ_ARGS) -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=build/fuzz/ \
	    build/fuzz/new/$$name tests/fuzz/corpus/$$name || exit 1; \
	done
endif

# Install whichever of those Debian packages are missing (as root, or through sudo).
deps-build deps-test deps-tools deps-scale: deps-%:
	@missing=$$(for p in $(DEB_$(shell echo $* | tr a-z A-Z)); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# Everything that must pass: unit + parity + CLI + bad-input tests, in a normal build,
# again under ASan+UBSan, and the unit tests under valgrind. Prints "N passed, M failed".
check: deps-test
	tests/run_all.sh

# Optional, as root: the README's Slurm array script run unchanged on a one-node Slurm that
# the test starts (tests/scale_slurm.sh). Not part of `make check`.
check-scale: deps-scale all
	bash tests/scale_slurm.sh

bench: deps-tools all bench-decode bench-faces
	$(PYTHON) tools/bench.py --model $(MODEL) $(BENCH_ARGS)

# Bytes to model/detector input on one thread (tools/bench_decode.c). With Debian's
# libstb-dev installed it also times the old path (stb_image 2.27 + stb_image_resize v1).
BENCH_BEFORE := $(if $(wildcard /usr/include/stb/stb_image_resize.h),-DBENCH_BEFORE -lstb)
bench-decode: $(BUILD)/libemote.a
	@mkdir -p build/bench
	$(PYTHON) tools/make_bench_images.py build/bench
	$(CC) $(CFLAGS_BASE) -O2 -o build/bench/bench_decode tools/bench_decode.c src/no_builtin_model.c \
	  $(BUILD)/libemote.a $(BENCH_BEFORE) $(LDLIBS)
	build/bench/bench_decode build/bench/photo-12mp.jpg build/bench/crop-48.png

# Face detection of a 640x480 photo on one thread (tools/bench_faces.c): emote against
# libfacedetection, the reference library with the same weights, in the same run. The
# reference is compiled only here, from $(FACEDETECT) with g++ -O3 and its README's flags
# (AVX2 where the CPU has it); it is never linked into emote. BENCH_FACES_SECONDS: how long.
FACEDETECT          ?= ../shared/third_party/libfacedetection
FACEDETECT_SRC      := $(addprefix $(FACEDETECT)/,facedetectcnn.cpp facedetectcnn-model.cpp facedetectcnn-data.cpp)
FACEDETECT_FLAGS    := -O3 $(if $(shell grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && echo y),-mavx2 -mfma -D_ENABLE_AVX2)
BENCH_FACES_SECONDS ?= 3
bench-faces: $(if $(wildcard $(FACEDETECT)/facedetectcnn.cpp),build/bench/bench_faces build/bench/faces-640x480.png)
	@if [ -x build/bench/bench_faces ]; then build/bench/bench_faces build/bench/faces-640x480.png $(BENCH_FACES_SECONDS) models/yunet.safetensors; \
	else echo "bench-faces: skipped, $(FACEDETECT) (the reference library's sources) is not there"; fi
build/bench/faces-640x480.png: tools/make_bench_images.py tests/fixtures/faces/scene-crowd.png
	$(PYTHON) tools/make_bench_images.py build/bench
build/bench/bench_faces: tools/bench_faces.c tools/bench_faces_ref.cpp src/cli/blas_kernel.c src/no_builtin_model.c \
  $(FACEDETECT_SRC) $(BUILD)/libemote.a
	@mkdir -p build/bench/facedetect
	echo '#define FACEDETECTION_EXPORT' > build/bench/facedetect/facedetection_export.h
	cd build/bench/facedetect && $(CXX) $(FACEDETECT_FLAGS) -I. -I$(abspath $(FACEDETECT)) -c \
	  $(abspath $(FACEDETECT_SRC) tools/bench_faces_ref.cpp)
	$(CC) $(CFLAGS_BASE) -O2 -DREFERENCE_BUILD='"$(CXX) $(FACEDETECT_FLAGS)"' -o $@ tools/bench_faces.c \
	  src/cli/blas_kernel.c src/no_builtin_model.c build/bench/facedetect/*.o $(BUILD)/libemote.a $(LDLIBS) -lstdc++

# End-to-end files/s of `emote -f tsv` over the FER2013 val folder against the engine alone
# (tools/bench_engine.c) at the same batch and threads, with the old loop (--readers 0) and the
# pipeline, with and without 5 ms per file open (tools/slow_open.c, LD_PRELOAD); peak RSS with
# 1,000,000 paths through `emote -`. BENCH_PIPELINE_ARGS=--quick for a smoke test.
bench-pipeline: all build/bench/bench_engine build/bench/slow_open.so
	$(PYTHON) tools/bench_pipeline.py $(BENCH_PIPELINE_ARGS)
build/bench/bench_engine: tools/bench_engine.c src/no_builtin_model.c src/cli/blas_kernel.c $(BUILD)/libemote.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_BASE) -O2 -DEMOTE_BENCH_CLI_KERNEL -o $@ $(filter %.c %.a,$^) $(LDLIBS)
build/bench/slow_open.so: tools/slow_open.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_BASE) -O2 -shared -fPIC -o $@ $< -ldl

# Re-trains the default model from scratch on ../shared/data and exports it (see models/README.md).
# Three stages: 50 epochs of cosine from lr 0.1; a warm restart of 16 epochs from lr 0.02; 30
# epochs from lr 0.02 distilled from stage 2 and the faces model, with CutMix, in bf16, whose
# last epoch is shipped (no selection). Stage 3 starts from stage 2 exported, as it was made.
# Every model file records its val metrics as ./emote eval measures them (export.py --measure).
FER2013_VAL := ../shared/data/fer2013/val
model: deps-tools all
	$(PYTHON) tools/train.py --epochs 50 --out runs/default
	$(PYTHON) tools/train.py --init runs/default/best.pt --epochs 16 --lr 0.02 --warmup-epochs 0.5 --out runs/stage2
	$(PYTHON) tools/export.py --force runs/stage2/best.pt runs/stage2/model.safetensors
	$(PYTHON) tools/train.py --init-model runs/stage2/model.safetensors --teacher runs/stage2/model.safetensors \
	  --teacher models/emote-fer2013-faces.safetensors --cutmix 0.5 --epochs 30 --lr 0.02 --warmup-epochs 0.5 \
	  --holdout-percent 10 --out runs/stage3
	$(PYTHON) tools/export.py --force --measure $(FER2013_VAL) runs/stage3/last.pt $(MODEL)
	$(MAKE) all

# The classifier --faces uses (-m fer2013-faces): the default model fine-tuned on FER2013
# train as FER2013 crops and as the detector crops them (tools/face_crops_dataset.py).
model-faces: deps-tools all
	$(PYTHON) tools/face_crops_dataset.py
	$(PYTHON) tools/train.py --data build/facecrops/mix --init-model $(MODEL) --epochs 5 --lr 0.01 \
	  --warmup-epochs 0.5 --out runs/facecrops
	$(PYTHON) tools/export.py --force --measure $(FER2013_VAL) runs/facecrops/last.pt models/emote-fer2013-faces.safetensors
	$(MAKE) all

# The FER+ classifier for --faces (-m ferplus-faces): the FER+ model fine-tuned on the FER+ votes
# of FER2013 train as FER2013 cut it and as the detector crops it (the same crops as model-faces).
model-ferplus-faces: deps-tools all
	$(PYTHON) tools/face_crops_dataset.py
	$(PYTHON) tools/train.py --labels ferplus --data build/facecrops/mix --init-model models/emote-ferplus.safetensors \
	  --epochs 5 --lr 0.01 --warmup-epochs 0.5 --out runs/ferplus-faces
	$(PYTHON) tools/export.py --force runs/ferplus-faces/best.pt models/emote-ferplus-faces.safetensors
	$(MAKE) all

# The FER+ model (-m ferplus): the default model's weights fine-tuned on the FER+ crowd votes
# (PLD targets, tools/ferplus.py) with a new 8-class head, 12 epochs; then 30 epochs distilled
# from that stage, with CutMix. `make model` first rebuilds the default model. Last epochs, no
# selection; the metrics recorded are the C engine's on FER+ PublicTest majority labels.
model-ferplus: deps-tools all
	rm -rf build/ferplus/val && $(PYTHON) tools/ferplus_folders.py $(FER2013_VAL) build/ferplus/val
	$(PYTHON) tools/train.py --labels ferplus --init-model $(MODEL) --epochs 12 --lr 0.05 --warmup-epochs 1 \
	  --out runs/ferplus
	$(PYTHON) tools/export.py --force runs/ferplus/last.pt runs/ferplus/model.safetensors
	$(PYTHON) tools/train.py --labels ferplus --init-model runs/ferplus/model.safetensors \
	  --teacher runs/ferplus/model.safetensors --cutmix 0.5 --epochs 30 --lr 0.02 --warmup-epochs 0.5 \
	  --out runs/ferplus2
	$(PYTHON) tools/export.py --force --measure build/ferplus/val runs/ferplus2/last.pt models/emote-ferplus.safetensors
	$(MAKE) all

fixtures: deps-tools $(BUILD)/jpeg_scans
	$(PYTHON) tools/make_fixtures.py tests/fixtures
	$(BUILD)/jpeg_scans models/samples/astronaut-collins.jpg tests/fixtures/jpeg/scan-per-component.jpg
	$(BUILD)/jpeg_scans models/samples/astronaut-collins.jpg tests/fixtures/jpeg/no-luma-scan.jpg 0
	$(BUILD)/jpeg_scans models/samples/astronaut-collins.jpg tests/fixtures/jpeg/no-chroma-scan.jpg 2
$(BUILD)/jpeg_scans: tools/jpeg_scans.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -o $@ $< -ljpeg

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/doc/emote
	install -m 755 emote $(DESTDIR)$(PREFIX)/bin/emote
	install -m 644 models/yunet.LICENSE $(DESTDIR)$(PREFIX)/share/doc/emote/LICENSE.libfacedetection
	install -m 644 src/third_party/stb/LICENSE $(DESTDIR)$(PREFIX)/share/doc/emote/LICENSE.stb
	install -m 644 libemote.a $(DESTDIR)$(PREFIX)/lib/libemote.a
	install -m 644 include/emote.h $(DESTDIR)$(PREFIX)/include/emote.h
	install -m 644 src/cli/emote.1 $(DESTDIR)$(PREFIX)/share/man/man1/emote.1
	sed -e 's|@PREFIX@|$(PREFIX)|' src/emote.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/emote.pc

clean:
	rm -rf build emote libemote.a

# Real-photo evaluation of --faces (tools/photos/manifest.json; photos rebuilt into build/photos by
# tools/photos/fetch_photos.py from fetched snapshots; skips with a message when they are absent).
# EVAL_PHOTOS_ARGS: e.g. "-m ferplus", "--min-face-score 0.4", "--curve".
eval-photos: all
	$(PYTHON) tools/eval_photos.py $(EVAL_PHOTOS_ARGS)

# The same photos through @vladmandic/face-api and @vladmandic/human (npm, tfjs WASM, one thread).
eval-photos-peers: all
	@test -d build/peers/node_modules/@vladmandic/human || npm install --no-audit --no-fund --prefix build/peers \
	  @vladmandic/face-api @vladmandic/human @tensorflow/tfjs@4.22.0 @tensorflow/tfjs-backend-wasm@4.22.0
	$(PYTHON) tools/eval_photos.py --dump-rgb build/photos-rgb
	NODE_PATH=build/peers/node_modules node tools/eval_photos_peers.mjs build/photos-rgb build/peers-out
	$(PYTHON) tools/eval_photos.py --from-jsonl build/peers-out/face-api.jsonl --name face-api \
	  --seconds $$(cat build/peers-out/face-api.seconds)
	$(PYTHON) tools/eval_photos.py --from-jsonl build/peers-out/human.jsonl --name human \
	  --seconds $$(cat build/peers-out/human.seconds)
