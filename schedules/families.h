#pragma once
// Windowed parametric families: one progress curve g on [0, 1] plus a per-layer composition
// that gives each layer l its own window [s_l, e_l] of quantization epochs.
//
//   layer l, epoch t (0..T-1):  r_l(t) = clip((t - s_l) / (e_l - s_l), 0, 1)
//                               (e_l = s_l: r = 0 before e_l, 1 from e_l on)
//                               r'_l  = 1 - (1 - r_l)^p_l          depth-dependent exponent
//                               p_l   = 1 + depth_exponent * (1 - d_l), d_l = l / (L - 1)
//   INQ fraction  f_l(t) = initial + (1 - initial) * g(r'_l)        (Quantity::kFraction)
//   ANA noise     sigma_l(t) = sigma0 * (1 - g(r'_l))               (Quantity::kNoise)
//   and exactly 1 (fraction) / 0 (noise) once r_l = 1.
//
// Progress curves g (non-decreasing, g(0) = 0, g(1) = 1):
//   linear       g = r                                   INQ-style linear ramp; QuantLab's
//                                                        linear ANA timer
//   cosine       g = (1 - cos(pi r)) / 2                 cosine annealing (Loshchilov & Hutter
//                                                        2017, SGDR), as an annealing curve
//   logistic     g = (S(k (r - c)) - S(-k c)) / (S(k (1 - c)) - S(-k c)),  S(x) = 1/(1+e^-x)
//                center c, steepness k; normalized so that g(0) = 0, g(1) = 1 (a sigmoid
//                ramp as used for soft-to-hard annealing, e.g. Yang et al. 2019 "Quantization
//                networks")
//   power        g = 1 - (1 - r)^alpha                   bounded-window power law: the noise is
//                                                        sigma0 ((e - clip(t)) / (e - s))^alpha,
//                                                        QuantLab's "bws" law (Spallanzani et al.
//                                                        2022, arXiv 2203.11323)
//   exponential  g = (1 - exp(-k r)) / (1 - exp(-k))     exponential decay exp(-k r) of the
//                                                        remainder, shifted to reach 0 at r = 1
//   geometric    g = 1 - (1 - q)^floor(K r)  (r < 1)     "freeze q of what remains" at K
//                                                        equally spaced epochs of the window
//                                                        (INQ: q = 0.5, initial = 0.5, K = 3 on
//                                                        [0, 3] gives the paper's 5-bit
//                                                        portions 0.5, 0.75, 0.875, 1;
//                                                        Zhou et al. 2017, Sec. 3)
//
// Per-layer composition ("layout"; a = start, b = end (negative: T + end), L layers):
//   overlapped  [a, b] for every layer                     (CVPR'22 "OVERLAPPED")
//   stagger     s_l = a + l*delta (delta >= 0; delta < 0: a + (L-1-l)|delta|, upper layers
//               first), e_l = s_l + W, W = b - a - (L-1)|delta| >= 0: every window has the
//               same length, the last one ends at b (start_l = start + l*delta)
//   same_start  [a, a + (l+1) W],  W = (b - a) / L         lower layers end first
//   same_end    [a + l W, b]                                lower layers start first
//   sequential  [a + l W, a + (l+1) W]                      a partition of [a, b] (CVPR'22
//                                                          "PARTITION", the QuantLab configs)
// depth_exponent = 0 gives the same curve for every layer; depth_exponent = L - 1 with the
// power curve gives alpha_l = alpha (L - l), the CVPR'22 "theory-inspired" progressive
// exponents (lower layers annealed faster).
//
// Windows must fit: b <= T - 1 (every layer is done by the last epoch), a <= b, W >= 0;
// otherwise values() throws a c10::ValueError naming the spec and the rule. Since every g is
// non-decreasing and the windows are fixed, fractions are non-decreasing and noise
// non-increasing; check_table() (schedules/schedule.h) still verifies every table.
#include <string>
#include <vector>

#include "schedules/schedule.h"

namespace qsched::sched {

class Registry;

/// Names of the windowed families ("linear", "cosine", ...).
const std::vector<std::string>& windowed_family_names();

/// Registers the windowed families (each for both quantities) in `r`.
void register_windowed_families(Registry& r);

/// A windowed family with its resolved parameters (see above).
class WindowedSchedule : public Schedule {
 public:
  /// `resolved`: the spec with every applicable default (Registry::resolve).
  WindowedSchedule(std::string family, json resolved, Quantity q, std::string what);
  Quantity quantity() const override { return q_; }
  std::vector<double> values(const ScheduleContext& ctx) override;
  json describe() const override { return spec_; }

  /// Layer l's window [s_l, e_l] for T epochs and L layers (throws when it does not fit).
  std::pair<double, double> window(int64_t l, int64_t T, int64_t L) const;
  /// The progress curve g(r), r in [0, 1].
  double curve(double r) const;

 private:
  std::string family_;
  json spec_;
  Quantity q_;
  std::string what_;
  std::string layout_;
  double start_, end_, delta_, depth_exponent_, initial_ = 0.0, sigma0_ = 0.0;
  double alpha_ = 1.0, rate_ = 1.0, center_ = 0.5, steepness_ = 10.0, ratio_ = 0.5;
  int64_t steps_ = 4;
};

}  // namespace qsched::sched
