/* rt_modes.h — `EXE eval modes`: StackMNIST mode counting (jem-spec 7.6;
 * docs/evaluation.md, StackMNIST). A generator's samples (the graph's
 * `generate`, no MCMC) have each channel classified by a digit classifier
 * (the graph's `digit_logits`, its parameters loaded by name from a separate
 * checkpoint); the digits of a sample's channels make its mode id,
 * channel 0 the most significant; the modes reached are counted and the
 * samples' mode histogram q is compared with the training labels' p by
 * KL(q || p).
 *
 * The counting and the divergence are plain functions of id arrays, tested on
 * their own (tests/t_modes.c). */
#ifndef JM_RT_MODES_H
#define JM_RT_MODES_H
#include "engine/rt_exec.h"
#include <stddef.h>
#include <stdint.h>

/* The mode id of one sample: digits[0..channels) each in [0, classes), channel
   0 the most significant: sum_c digits[c] * classes^(channels - 1 - c)
   (StackMNIST: 100 d_R + 10 d_G + d_B). -1 when a digit is out of range. */
int64_t jm_modes_id(const int64_t *digits, int channels, int classes);

/* hist[0..nmodes) = how many of ids[0..n) equal each mode. 0, or -1 with err
   naming the first id outside [0, nmodes) (and its position). */
int jm_modes_histogram(const int64_t *ids, int64_t n, int64_t nmodes, int64_t *hist, char *err, size_t errlen);

/* How many entries of hist[0..nmodes) are non-zero. */
int64_t jm_modes_covered(const int64_t *hist, int64_t nmodes);

/* KL(q || p) = sum_m q_m log(q_m / p_m) in nats, q and p the histograms
   normalised to sum 1. Terms with q_m = 0 are 0. A mode with q_m > 0 but
   p_m = 0 (one the training data never shows) makes the divergence infinite;
   as VERA's mode_counting/stackmnist_mode.py does (its non-finite terms set to
   0), such terms are left out, and their share of q is returned in *outside
   (may be NULL) so that the reader sees what the sum could not. NAN when
   either histogram is empty. */
double jm_modes_kl(const int64_t *q, const int64_t *p, int64_t nmodes, double *outside);

/* `EXE eval modes` (argv as jm_eval_main's: argv[2] is "modes"). */
int jm_modes_main(const jm_table *t, jm_kernel_fn *kernels, int argc, char **argv, const char *exe);

/* Loads the parameters and state named SCOPE.* of the graph from checkpoint
   `path` (a checkpoint of another graph: graphs/mnist_digit.graph's), by name
   with exact shapes; the file's other tensors are ignored. Every SCOPE.*
   parameter of the graph must be in the file, and the file's SCOPE.* tensors
   must all be the graph's; nothing changes unless all convert. 0, or -1 with
   err naming the file and the tensor. */
int jm_modes_load_scope(jm_rt *rt, const char *path, const char *scope, char *err, size_t errlen);
#endif
