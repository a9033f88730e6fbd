/* data.h — the runtime's data loaders: labelled image and table datasets for training
 * and evaluating Joint Energy-based Models.
 *
 * Formats (all integers big-endian, pixels uint8):
 *   IDX (MNIST, Fashion-MNIST)  images: u32 magic 0x00000803, u32 n, u32 rows, u32 cols,
 *                               then n*rows*cols bytes; or (several channels, e.g.
 *                               StackMNIST) magic 0x00000804, u32 n, u32 c, u32 rows, u32 cols,
 *                               then n*c*rows*cols bytes (CHW). Labels (a second file): u32
 *                               magic 0x00000801, u32 n, then n bytes; or magic 0x00000C01,
 *                               u32 n, then n big-endian int32 (each 0..JM_DATA_MAX_LABEL).
 *   CIFAR-10 binary             records of 1 label byte + 3072 pixel bytes (R, G, B planes
 *                               of 32x32, row-major); no header.
 *   CIFAR-100 binary            records of coarse label, fine label, 3072 pixel bytes.
 *   CSV                         comma-separated numbers, one record a line, one column the
 *                               integer label ("3" or "3.0"); optional header line. The label
 *                               column: the last, or a number (negative from the end), or a
 *                               name in the header ("# label" matches "label").
 *   text (.txt, .tsv, .dat)     the same with fields separated by spaces and tabs (UCI HAR).
 *   Either with a labels file:  all columns are features; the labels file (text) has one label
 *                               a line, as many as the data file has records.
 * Images are scaled to [-1, 1] as x/255*2-1 (JEM's Normalize((.5,.5,.5), (.5,.5,.5))) and
 * stored CHW; CSV values are kept raw.
 *
 * The loaders never trust a file: sizes in a header are checked against the file's size
 * before anything is allocated, and every problem is one message naming the file and the
 * record (0-based), or FILE:LINE:COLUMN (1-based) for CSV, with a return of -1.
 *
 * Randomness (shuffling, augmentation) is Philox (philox.h), a pure function of the seed
 * and counters, so every machine and thread count gives the same permutations and the same
 * augmented batches, and a run resumed at step s draws what the uninterrupted run drew. */
#ifndef JM_DATA_H
#define JM_DATA_H
#include <stddef.h>
#include <stdint.h>

typedef enum { JM_DATA_AUTO, JM_DATA_IDX, JM_DATA_CIFAR10, JM_DATA_CIFAR100, JM_DATA_CSV, JM_DATA_TEXT } jm_data_format;

/* IDX headers declaring more pixels per image than this are rejected as corrupt. */
#define JM_DATA_MAX_PIXELS (1 << 24)
/* CSV and IDX int32 labels above this are rejected (a stray huge number would make `classes` absurd). */
#define JM_DATA_MAX_LABEL 65535

typedef struct {
    jm_data_format format;      /* AUTO: .csv -> CSV; .txt, .tsv, .dat -> text; .bin -> CIFAR-10 if the size is a multiple
                                   of 3073, else CIFAR-100 if a multiple of 3074; otherwise IDX
                                   when the file starts with the IDX images magic */
    const char *labels;         /* IDX: labels file; NULL: the images path with "images-idx3"
                                   (or "images-idx4") replaced by "labels-idx1" in the file name.
                                   CSV/text: a text file of one label a line (then the data file
                                   has no label column) */
    int csv_label_column;       /* CSV: 0-based column of the label; -1 = last column */
    int csv_header;             /* CSV: first line is a header: 1 yes, 0 no, -1 detect (first
                                   line has a field that is not a number) */
    int cifar100_fine;          /* CIFAR-100: 1 fine labels (100 classes), 0 coarse (20) */
    int64_t limit;              /* read at most this many records (0 = all); the whole file's
                                   structure is still checked for IDX and CIFAR, while CSV
                                   stops parsing after `limit` records */
    const char *label_column;   /* CSV/text: when set, overrides csv_label_column: "N" (0-based,
                                   negative from the end) or a header name */
    int64_t label_base;         /* CSV/text: y = label - label_base (UCI HAR's 1..6 -> 0..5 with 1);
                                   a label below it is an error */
} jm_data_opts;

typedef struct {
    int64_t n;                  /* records */
    int c, h, w;                /* image shape; CSV: c = 1, h = 1, w = number of features */
    float *x;                   /* n * c*h*w values; images scaled to [-1, 1] as x/255*2-1; CSV raw */
    int64_t *y;                 /* n labels in [0, classes) */
    int classes;                /* IDX max(10, max label + 1), CIFAR-10 10, CIFAR-100 100 or 20,
                                   CSV max label + 1 */
    jm_data_format format;      /* the format actually read (never AUTO) */
    float pad_value;            /* what crop padding fills in: -1 for images (pixel 0 after
                                   scaling), 0 for CSV */
    char path[512];             /* the file the images came from, for messages */
} jm_dataset;

/* The defaults: AUTO, derived labels path, label in the last CSV column, CSV header
   detected, CIFAR-100 fine labels, no limit. */
jm_data_opts jm_data_defaults(void);
const char *jm_data_format_name(jm_data_format f);

/* Maps a dataset directory to its file for split "train" or "test":
   train-images-idx3-ubyte / t10k-images-idx3-ubyte (IDX), train-images-idx4-ubyte /
   t10k-images-idx4-ubyte (IDX with channels), data_batch_1.bin / test_batch.bin
   (CIFAR-10) or train.bin / test.bin (CIFAR-100), whichever exists, in that order. A path
   that is not a directory is copied unchanged. 0 ok; -1 when path is a directory holding
   none of them (out then names the IDX candidate), split is unknown, or out is too small. */
int jm_data_resolve(const char *path, const char *split, char *out, size_t outlen);

/* Loads path (a file, or a directory: its "train" file, see jm_data_resolve) into ds.
   o may be NULL (jm_data_defaults()). 0 ok; -1 with err set and ds zeroed. */
int  jm_data_load(const char *path, const jm_data_opts *o, jm_dataset *ds, char *err, size_t errlen);
void jm_data_free(jm_dataset *ds);

/* Reshapes images in place to c x h x w, for scoring a data set with a model made for
   another shape (say Fashion-MNIST as an out-of-distribution set for CIFAR-10): each
   image is centred, padded with ds->pad_value where it is smaller and cropped where it
   is larger; one channel is repeated into c, and c channels become one by their mean.
   Any other channel change is refused. 0 ok (also when nothing changes); -1 with err
   (the dataset untouched). */
int jm_data_conform(jm_dataset *ds, int c, int h, int w, char *err, size_t errlen);

/* Permutation of [0, n) for (seed, epoch): Fisher-Yates driven by Philox, the same on
   every machine. */
void jm_data_shuffle(int64_t n, uint64_t seed, uint64_t epoch, int64_t *perm);

/* The first per_class records of each class in the order of jm_data_shuffle(seed, epoch 0),
   written to idx (room for classes*per_class) in that order; returns how many
   (classes*per_class), or -1 with err when some class has fewer records or per_class < 1. */
int64_t jm_data_labelled_subset(const jm_dataset *ds, int per_class, uint64_t seed, int64_t *idx, char *err, size_t errlen);

/* JEM's training transform, in torchvision's order:
   RandomCrop(h x w, padding=crop_pad) -> RandomHorizontalFlip -> Normalize -> + noise*N(0,1).
   crop_pad > 0: crop of the image padded by crop_pad on every side with ds->pad_value, the
   offsets uniform in [0, 2*crop_pad]; hflip: mirror left-right with probability 1/2;
   noise: Gaussian noise of this standard deviation added to every value (JEM uses 0.03). */
typedef struct { int crop_pad; int hflip; float noise; } jm_augment;

/* Copies records idx[0..b) into x_out (b*c*h*w) and y_out (b), augmented when aug != NULL.
   The random choices for slot i depend only on (seed, step, i), so a resumed run
   reproduces them. An index outside [0, n) (a caller bug) yields a record of pad values
   with label -1 rather than a read out of bounds. */
void jm_data_batch(const jm_dataset *ds, const int64_t *idx, int64_t b, const jm_augment *aug, uint64_t seed, uint64_t step,
                   float *x_out, int64_t *y_out);
/* The same for the share of a larger batch that starts at slot slot0 (a
   data-parallel shard): its random choices are those of slots slot0 + i. */
void jm_data_batch_share(const jm_dataset *ds, const int64_t *idx, int64_t b, const jm_augment *aug, uint64_t seed,
                         uint64_t step, int64_t slot0, float *x_out, int64_t *y_out);
#endif
