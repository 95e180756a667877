#!/usr/bin/env bash
# gpu-check.sh — run the Vulkan tests and bench_vulkan on a real GPU, for a
# session that has a device machine (an NVIDIA H100/H200 here; see
# /work/.library/device/README.md). Two steps, because that machine has no
# package registry and none of the daemon's build dependencies:
#
#   1. here (the dev machine):   bench/vulkan/gpu-check.sh prepare
#      builds the test and bench programs (Release, build dir build-gpucheck)
#      and copies them with this host's libvulkan.so.1 and stories260K into
#      .gpucheck/ (ignored through .git/info/exclude), downloads Debian's
#      loader and libglvnd packages into .gpucheck/gl/ (NVIDIA's Vulkan ICD,
#      libGLX_nvidia.so.0, needs libGLdispatch; without it vkCreateInstance
#      answers VK_ERROR_INCOMPATIBLE_DRIVER there), then prints the device
#      call to make. VALIDATION=1 carries the Khronos validation layer
#      instead of nn's bg_bench_lm + OpenBLAS (both do not fit one call), and
#      the run then repeats the runtime and model tests under it.
#   2. on the device machine, through the device tool's `run`, with
#      carry [".gpucheck"]:       bash bench/vulkan/gpu-check.sh run
#      unpacks .gpucheck/gl/*.deb into / when the machine lacks libGLdispatch,
#      finds the NVIDIA Vulkan driver manifest (nvidia_icd.json), points the
#      runtime at the carried loader (BG_VK_LOADER) when the machine has
#      none, runs the tests against the GPU (BG_VK_TEST_NATIVE=1: no lavapipe)
#      and the benchmark (--big, matvec as % of the card's bandwidth), and
#      leaves the logs in $OUT (SWEEPS=0 leaves out the tuning sweeps). Takes about 2.5 minutes on an H200; give it
#      timeout_s 420. The training part (test_vk_train; bench_vulkan
#      --train-only at the 15M shape, batch 32, with the training step's GEMMs
#      as % of the card's FP32 peak) adds a few minutes with the CPU column;
#      TRAIN_CPU=0 SWEEPS=0 keeps the whole run near 3 minutes (timeout_s 540).
#
# Record the bench table (with the card's name, printed first) in
# docs/PERFORMANCE.md, section "## Vulkan".
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
dir=.gpucheck

prepare() {
    set -e
    local b=build-gpucheck
    cmake -S . -B "$b" -DCMAKE_BUILD_TYPE=Release >/dev/null # Release: timings
    cmake --build "$b" -j2 --target test_vk_ops test_vk_runtime test_vk_model test_vk_train \
        test_vk_nn_train bench_vulkan
    mkdir -p "$dir/models" "$dir/lib"
    rm -rf "$dir/layer" "$dir/lib"/* "$dir/bg_bench_lm"
    if [ "${VALIDATION:-0}" = 1 ]; then
        # the Khronos validation layer (22 MB) instead of OpenBLAS (36 MB):
        # together they would not fit the 64 MiB a device call carries
        local so=/usr/lib/x86_64-linux-gnu/libVkLayer_khronos_validation.so
        local js=/usr/share/vulkan/explicit_layer.d/VkLayer_khronos_validation.json
        [ -r "$so" ] && [ -r "$js" ] || {
            echo "gpu-check: VALIDATION=1 needs vulkan-validationlayers here" >&2; exit 1; }
        mkdir -p "$dir/layer"
        cp "$so" "$dir/layer/"
        sed 's|"library_path": "[^"]*"|"library_path": "./libVkLayer_khronos_validation.so"|' \
            "$js" >"$dir/layer/VkLayer_khronos_validation.json"
    # tokens/s on the GPU through the transformer (nn's bench; needs OpenBLAS,
    # carried with its runtime libraries since the device image lacks them)
    elif cmake --build "$b" -j2 --target bg_bench_lm >/dev/null 2>&1; then
        cp "$b/bench/lm/bg_bench_lm" "$dir/"
        ldd "$b/bench/lm/bg_bench_lm" | awk '/openblas|gfortran|quadmath|gomp/ {print $3}' |
            while read -r l; do cp -L "$l" "$dir/lib/"; done
    fi
    # the device image has neither a Vulkan loader nor libglvnd
    mkdir -p "$dir/gl"
    if ! ls "$dir"/gl/libglvnd0_*.deb >/dev/null 2>&1; then
        local o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/bg-gl-lists'
        mkdir -p /tmp/bg-gl-lists/partial
        # shellcheck disable=SC2086
        apt-get $o update >/dev/null &&
            (cd "$dir/gl" && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 \
                libgl1 libglx0 libgles2 >/dev/null 2>&1) ||
            echo "gpu-check: could not download libglvnd packages into $dir/gl; the device" \
                 "machine's NVIDIA ICD may then fail to load" >&2
    fi
    mkdir -p .git/info
    grep -qx "/$dir/" .git/info/exclude 2>/dev/null || echo "/$dir/" >>.git/info/exclude
    cp "$b/tests/vulkan/test_vk_ops" "$b/tests/vulkan/test_vk_runtime" \
       "$b/tests/vulkan/test_vk_model" "$b/tests/vulkan/test_vk_train" \
       "$b/tests/vulkan/test_vk_nn_train" \
       "$b/bench/vulkan/bench_vulkan" "$dir/"
    # ../shared beside the checkout does not travel to the device machine
    cp ../shared/models/stories260K.bin "$dir/models/" 2>/dev/null ||
        echo "gpu-check: ../shared/models/stories260K.bin missing; test_vk_model runs the" \
             "synthetic model only" >&2
    local lib
    lib=$(ldconfig -p | awk '/libvulkan\.so\.1 .*x86-64/ {print $NF; exit}')
    if [ -n "$lib" ]; then
        cp -L "$lib" "$dir/libvulkan.so.1"
    else
        echo "gpu-check: no libvulkan.so.1 here (apt-get install libvulkan1); the device" \
             "machine must then have its own loader" >&2
    fi
    ls -l "$dir"
    echo
    echo "Now call the device tool: run(command=\"bash bench/vulkan/gpu-check.sh run\"," \
         "carry=[\"$dir\"], timeout_s=420)"
}

find_icd() {
    local f
    for f in "${VK_DRIVER_FILES:-}" \
             /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json \
             /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json \
             /usr/local/share/vulkan/icd.d/nvidia_icd.json; do
        [ -n "$f" ] && [ -r "$f" ] && { echo "$f"; return 0; }
    done
    find / -xdev -name 'nvidia_icd*.json' 2>/dev/null | head -1
}

run_device() {
    local out=${OUT:-$root/$dir/out}
    mkdir -p "$out"
    exec > >(tee "$out/gpu-check.log") 2>&1
    if ! ldconfig -p | grep -q 'libGLdispatch\.so\.0 ' && ls "$dir"/gl/*.deb >/dev/null 2>&1; then
        echo "== unpacking the carried libvulkan1 and libglvnd packages"
        local f
        for f in "$dir"/gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
    fi
    echo "== machine"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory \
        --format=csv 2>&1 || echo "nvidia-smi not available"
    local icd
    icd=$(find_icd)
    if [ -z "$icd" ]; then
        echo "gpu-check: no nvidia_icd.json: the driver's Vulkan (graphics) capability is" \
             "missing on this machine; nothing to test"
        return 1
    fi
    export VK_DRIVER_FILES="$icd"
    echo "VK_DRIVER_FILES=$icd"
    if ! ldconfig -p | grep -q 'libvulkan\.so\.1 '; then
        export BG_VK_LOADER="$root/$dir/libvulkan.so.1"
        echo "no system Vulkan loader: BG_VK_LOADER=$BG_VK_LOADER"
    fi
    export BG_VK_TEST_NATIVE=1
    local rc=0
    echo "== test_vk_ops"
    timeout 120 "$dir/test_vk_ops" || rc=1
    local m
    for m in chain staging readback timestamps smallrange; do
        echo "== test_vk_runtime $m"
        if [ "$m" = staging ]; then
            BG_VK_FORCE_STAGING=1 timeout 120 "$dir/test_vk_runtime" "$m" || rc=1
        elif [ "$m" = timestamps ]; then
            BG_VK_TIMESTAMPS=1 timeout 120 "$dir/test_vk_runtime" "$m" || rc=1
        else
            timeout 120 "$dir/test_vk_runtime" "$m" || rc=1
        fi
    done
    echo "== test_vk_model (stories260K and a synthetic model, Vulkan vs CPU)"
    BG_SHARED_DIR="$root/$dir" timeout 180 "$dir/test_vk_model" || rc=1
    echo "== test_vk_train (backward ops, loss, AdamW: GPU vs reference and CPU backend)"
    timeout 180 "$dir/test_vk_train" || rc=1
    echo "== test_vk_nn_train (whole-model gradients, LoRA fine-tune: GPU vs CPU backend)"
    BG_SHARED_DIR="$root/$dir" timeout 300 "$dir/test_vk_nn_train" || rc=1
    if [ -d "$dir/layer" ]; then
        echo "== under the validation layer (API use + synchronization hazards)"
        local v
        for v in "test_vk_runtime chain" "test_vk_runtime staging" "test_vk_runtime readback" \
                 "test_vk_ops" "test_vk_model" "test_vk_train"; do
            echo "-- $v"
            VK_LAYER_PATH="$root/$dir/layer" VK_INSTANCE_LAYERS=VK_LAYER_KHRONOS_validation \
                VK_LAYER_ENABLES=VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT \
                BG_SHARED_DIR="$root/$dir" timeout 300 $dir/$v >"$out/validation.log" 2>&1 ||
                rc=1
            if grep -E "Validation Error|VUID-|SYNC-HAZARD" "$out/validation.log" | head -20; then
                rc=1
            else
                tail -1 "$out/validation.log"
            fi
        done
    fi
    # Peak memory bandwidth of the card for the matvec column (GB/s, spec sheet).
    local name peak=0
    name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
    case "$name" in
        *H200*) peak=4800 ;;
        *H100*PCIe*) peak=2000 ;;
        *H100*) peak=3350 ;;
        *A100*80GB*) peak=2039 ;;
        *A100*) peak=1555 ;;
    esac
    # FP32 peak (no tensor cores: the GEMM shaders are plain FMA), spec sheet
    local tflops=0
    case "$name" in
        *H200*|*H100*SXM*|*H100\ 80GB\ HBM3*) tflops=67 ;;
        *H100*PCIe*) tflops=51 ;;
        *H100*) tflops=67 ;;
        *A100*) tflops=19.5 ;;
    esac
    echo "== bench_vulkan on $name (peak $peak GB/s)"
    timeout 240 "$dir/bench_vulkan" --big --peak-gbs "$peak" | tee "$out/bench_vulkan.md" || rc=1
    # issue 13: the backward ops and a training step's GEMMs at the 15M shape,
    # batch 32 x 256, against the CPU backend (TRAIN_CPU=0: GPU only, faster)
    echo "== bench_vulkan --train-only on $name (FP32 peak $tflops TFLOP/s)"
    local nocpu=""
    [ "${TRAIN_CPU:-1}" = 0 ] && nocpu=--no-cpu
    timeout 300 "$dir/bench_vulkan" --big --train-only --peak-tflops "$tflops" $nocpu |
        tee "$out/bench_vulkan_train.md" || rc=1
    if [ -x "$dir/bg_bench_lm" ]; then
        echo "== bg_bench_lm (tokens/s: plain forward, CPU backend, Vulkan on the GPU)"
        LD_LIBRARY_PATH="$root/$dir/lib" timeout 300 "$dir/bg_bench_lm" --quick \
            --model "$dir/models/stories260K.bin" --tmp /tmp | tee "$out/bench_lm.md" || rc=1
    fi
    if [ "${SWEEPS:-1}" = 0 ]; then
        echo "gpu-check: done (SWEEPS=0: no tuning sweeps), rc=$rc"
        return $rc
    fi
    echo "== bench_vulkan matvec sweep (subgroup kernel off: BG_VK_MV_WG / BG_VK_MV_LANES;"
    echo "   on: BG_VK_MV_WG = subgroups x subgroup size per workgroup)"
    local wg
    for wg in 128/128/0 64/32/0 256/64/0 256/256/0 64/0/1 128/0/1 256/0/1 512/0/1; do
        local w=${wg%%/*} rest=${wg#*/}
        local l=${rest%/*} sg=${rest#*/}
        echo "-- BG_VK_MV_WG=$w BG_VK_MV_LANES=$l BG_VK_MV_SUBGROUP=$sg"
        BG_VK_MV_WG=$w BG_VK_MV_LANES=$l BG_VK_MV_SUBGROUP=$sg timeout 60 "$dir/bench_vulkan" \
            --big --no-cpu --peak-gbs "$peak" | grep matvec
    done
    echo "== bench_vulkan matmul tile sweep (BG_VK_MM_TILE=TXxTYxBKxRMxRN)"
    local tile
    for tile in 16x16x8x8x8 16x16x16x8x8 32x8x16x4x8 16x16x32x4x4; do
        echo "-- BG_VK_MM_TILE=$tile"
        BG_VK_MM_TILE=$tile timeout 60 "$dir/bench_vulkan" --big --no-cpu --matmul-only |
            grep -E "matmul (512|1024|2048|4096)"
    done
    echo "gpu-check: done, rc=$rc"
    return $rc
}

case "${1:-}" in
    prepare) prepare ;;
    run) run_device ;;
    *) echo "usage: $0 prepare|run" >&2; exit 2 ;;
esac
