/*
 * cmd_compress.c — `edgellm compress`: layer-wise unified compression of a model under a size
 * budget (libcompress), with a summary on stdout and a progress bar on stderr.
 */
#include "cli.h"
#include "compress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
    printf(
        "usage: edgellm compress -m IN.gguf -o OUT.gguf (--target-bpw B | --target-size BYTES |\n"
        "                        --uniform TYPE) [--calib FILE] [--sparsity off|auto]\n"
        "                        [--report PREFIX] [-t THREADS]\n\n"
        "Measures every weight matrix's sensitivity on calibration text and chooses its format\n"
        "(f16, q8_0, q6_k, q5_k, q5_0, q4_k, iq4_xs, q4_0, q3_k, q2_k) so that the predicted KL\n"
        "divergence to the input model is smallest within the budget.\n"
        "  --target-bpw B       bits per weight over all tensors (e.g. 4.5)\n"
        "  --target-size BYTES  output file size; suffixes K, M, G (powers of 1024)\n"
        "  --uniform TYPE       every weight matrix in TYPE (a baseline; no allocation)\n"
        "  --calib FILE         calibration text (default models/heldout.txt)\n"
        "  --calib-tokens N     tokens for column importance (default 16384)\n"
        "  --kl-tokens N        tokens for measured KL divergence (default 1024)\n"
        "  --chunk N            tokens per calibration sequence (default 256)\n"
        "  --sparsity off|auto  auto measures, per weight matrix, Wanda pruning (2:4 and 50%%\n"
        "                       unstructured, kept values importance-weighted 4-bit) against the\n"
        "                       dense formats at the same bits per weight and reports the result;\n"
        "                       pruning is never applied: this version has no sparse storage\n"
        "                       format with its own kernels (default off)\n"
        "  --allow-low-head     let the embedding / output head go below 4.5 bits\n"
        "  --plain-quant        round-to-nearest quantizers instead of importance-weighted\n"
        "  --report PREFIX      write PREFIX.json and PREFIX.svg\n"
        "  -t N                 threads (default: performance cores)\n"
        "  -q, --quiet          no progress bar\n");
}

static int parse_size(const char *s, uint64_t *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || v <= 0) return -1;
    double mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1024.0, end++;
    else if (*end == 'M')
        mul = 1024.0 * 1024, end++;
    else if (*end == 'G')
        mul = 1024.0 * 1024 * 1024, end++;
    if (*end == 'i' && mul > 1) end++;
    if (*end == 'B') end++;
    if (*end || v * mul > 1e15) return -1;
    *out = (uint64_t)(v * mul);
    return 0;
}

int cmd_compress(int argc, char **argv) {
    struct cmp_params p;
    cmp_params_default(&p);
    p.progress = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        double d;
        if (cli_is_help(a)) {
            usage();
            return 0;
        } else if (!strcmp(a, "--allow-low-head")) {
            p.allow_low_head = true;
            continue;
        } else if (!strcmp(a, "--plain-quant")) {
            p.plain_quant = true;
            continue;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            p.progress = false;
            continue;
        }
        if (!v) return cli_usage_error("compress", "unknown or incomplete option '%s'", a);
        i++;
        if (!strcmp(a, "-m"))
            p.input = v;
        else if (!strcmp(a, "-o"))
            p.output = v;
        else if (!strcmp(a, "--target-bpw")) {
            if (cli_parse_float(v, 1.0, 32.0, &d))
                return cli_usage_error("compress", "--target-bpw takes 1..32");
            p.target_bpw = d;
        } else if (!strcmp(a, "--target-size")) {
            if (parse_size(v, &p.target_bytes))
                return cli_usage_error("compress", "--target-size takes bytes, e.g. 20M");
        } else if (!strcmp(a, "--uniform")) {
            int ty = eng_type_from_name(v);
            if (ty < 0 || !eng_type_traits((enum eng_type)ty))
                return cli_usage_error("compress",
                                       "--uniform takes a format such as q4_k (not '%s')", v);
            p.uniform = v;
        } else if (!strcmp(a, "--calib"))
            p.calib_path = v;
        else if (!strcmp(a, "--report"))
            p.report_prefix = v;
        else if (!strcmp(a, "--sparsity")) {
            if (!strcmp(v, "off"))
                p.sparsity = CMP_SPARSITY_OFF;
            else if (!strcmp(v, "auto"))
                p.sparsity = CMP_SPARSITY_AUTO;
            else
                return cli_usage_error("compress", "--sparsity takes off or auto");
        } else if (!strcmp(a, "--calib-tokens") || !strcmp(a, "--kl-tokens") ||
                   !strcmp(a, "--chunk") || !strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (cli_parse_int(v, 1, 1 << 24, &n))
                return cli_usage_error("compress", "%s takes a positive count", a);
            if (!strcmp(a, "--calib-tokens"))
                p.calib_tokens = (int)n;
            else if (!strcmp(a, "--kl-tokens"))
                p.kl_tokens = (int)n;
            else if (!strcmp(a, "--chunk"))
                p.chunk = (int)n;
            else
                p.n_threads = (int)n;
        } else {
            return cli_usage_error("compress", "unknown option '%s'", a);
        }
    }
    if (!p.input || !p.output)
        return cli_usage_error("compress", "-m IN.gguf and -o OUT.gguf are required");
    if ((p.target_bpw > 0) + (p.target_bytes > 0) + (p.uniform != NULL) != 1)
        return cli_usage_error("compress", "give one of --target-bpw, --target-size, --uniform");
    struct cmp_result r;
    int err = cmp_compress(&p, &r);
    if (err) return cli_fail("compress", "%s", eng_last_error());
    printf("wrote %s: %llu bytes, %.3f bits per weight\n", p.output,
           (unsigned long long)r.file_bytes, r.bpw);
    if (r.predicted_kld == r.predicted_kld)
        printf("KL divergence to the input: predicted %.6f, measured %.6f\n", r.predicted_kld,
               r.measured_kld);
    else
        printf("KL divergence to the input: measured %.6f\n", r.measured_kld);
    if (r.sparsity_evaluated) {
        static const char *const names[2] = {"2:4 pruning (3.25 bpw)",
                                             "50% unstructured pruning (3.5 bpw)"};
        for (int k = 0; k < 2; k++)
            printf("sparsity: %s has %.1fx the error of the dense formats at its size (median), "
                   "better in %d of %d tensors\n",
                   names[k], r.sparse_ratio[k], r.sparse_pays[k], r.n_tensors);
        printf("sparsity: measured only, not applied (no sparse storage format with its own "
               "kernels in this version)\n");
    }
    printf("time %.1f s, peak RSS %.1f MiB\n", r.seconds, r.peak_rss_bytes / 1048576.0);
    if (p.report_prefix) printf("report: %s.json, %s.svg\n", p.report_prefix, p.report_prefix);
    return 0;
}
