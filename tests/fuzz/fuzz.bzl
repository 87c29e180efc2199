"""One libFuzzer target plus its corpus regression test."""

def echelon_fuzz_target(name, deps):
    """Declares the targets of fuzz target `name` (source `<name>_fuzzer.cc`).

    <name>_fuzzer_lib   the LLVMFuzzerTestOneInput function;
    <name>_corpus_test  cc_test: every file of corpus/<name>/ through it, one
                        gtest case per file, under the default toolchain;
    <name>_fuzzer       the libFuzzer binary (manual: clang only; build with
                        tools/fuzz.sh or `--config=fuzz` under clang).
    """
    native.cc_library(
        name = name + "_fuzzer_lib",
        testonly = True,
        srcs = [name + "_fuzzer.cc"],
        deps = deps,
        alwayslink = True,
    )
    native.cc_test(
        name = name + "_corpus_test",
        size = "small",
        linkstatic = True,
        srcs = ["corpus_runner.cc"],
        args = ["tests/fuzz/corpus/" + name],
        data = native.glob(["corpus/" + name + "/**"]),
        deps = [
            ":" + name + "_fuzzer_lib",
            "@system//:gtest",
        ],
    )
    native.cc_binary(
        name = name + "_fuzzer",
        testonly = True,
        linkstatic = True,
        linkopts = ["-fsanitize=fuzzer"],
        tags = ["manual"],
        deps = [":" + name + "_fuzzer_lib"],
    )
