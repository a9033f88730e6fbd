/* elab_sam.h — sharpness-aware minimisation inside `minimize` (elab_sam.c). */
#ifndef JM_ELAB_SAM_H
#define JM_ELAB_SAM_H
#include "elab_int.h"

/* SAM / ASAM's gradients for `minimize loss with opt` when opt has sam_rho > 0
   (language §13.3): from the first pass's gradients `grads` (jm_elab_params_grad
   of loss), the perturbation e_p, the loss re-evaluated with every read of each
   parameter p replaced by p + e_p, and its gradients with respect to p + e_p,
   in grads' order. rho is the radius (a number, possibly a config constant:
   then a run-time knob), adaptive 0 or 1. Returns a PARAMS value like grads,
   or an error value after reporting at loc. */
jm_value jm_elab_sam_grads(jm_ctx *c, int loss, const jm_value *grads, jm_value rho, int adaptive, jm_loc loc);
#endif
