#pragma once
// ANA noise schedules (Quantity::kNoise): per layer l and epoch t, the noise level sigma_l(t)
// of the layer's quantizers (additive noise annealing, Spallanzani et al. 2019, arXiv
// 1905.10452; per-layer windows and exponents from the CVPR 2022 follow-up, arXiv 2203.11323).
//
//   {"family": "ana_window",
//    "sigma0": 0.5,            // sigma at the start of every window (>= 0), in the units of the
//                              // algorithm's noise parametrization (see inner/ana/ana.h)
//    "shape": "power",         // "power" | "linear" | "cosine" | "exponential"
//    "alpha": 1.0,             // shape "power": exponent (> 0)
//    "rate": 4.0,              // shape "exponential": decay rate k (> 0)
//    "layout": "sequential",   // "sequential" | "same_start" | "same_end" | "overlapped"
//                              // | "progressive"
//    "exponents": "homogeneous",  // "homogeneous" | "progressive" (shape "power" only)
//    "start": 0,               // first epoch of the first window (quantization epochs)
//    "end": -1,                // last epoch of the last window; negative counts from the end
//                              // (-1 = the last epoch T - 1); exclusive with "window"
//    "window": W}              // epochs per layer window (> 0); default (end - start) / L
//
// Windows (layer l = 0..L-1 in forward order, a = start, b = end, W = window; with "window"
// given, b = a + L W, which must be <= T - 1 so that every layer reaches 0 by the last epoch):
//
//   sequential   [a + l W, a + (l+1) W]   one layer after the other, input layer first
//                                         (the shipped QuantLab configs; CVPR'22 "PARTITION")
//   same_start   [a, a + (l+1) W]         all start together, lower layers end first
//   same_end     [a + l W, b]             lower layers start first, all end together
//   overlapped   [a, b]                   one common window ("OVERLAPPED")
//   progressive  [a, b] with progressive exponents (below): the CVPR'22 "theory-inspired"
//                setting, lower layers annealed faster
//
//      sigma ^           sequential, L = 3           sigma ^        progressive, L = 3
//      sigma0|___  ___ ___                           sigma0|\ \  \         .
//            |   \    \   \                                | \ \  \        .
//            |    \    \   \                               |  \_\__\__
//          0 +-----\----\---\---> t                      0 +--a-------b--> t
//                a   a+W  a+2W a+3W
//
// Value: with the layer's window [s_l, e_l] and the progress r = (clip(t, s_l, e_l) - s_l) /
// (e_l - s_l) (r = 1 for t >= e_l when e_l <= s_l),
//
//   sigma_l(t) = sigma0 * f(r),  f(r) =
//     power:        (1 - r)^alpha_l    (quantlab's bounded-window "bws" law:
//                                       ((t_end - clip(t, t_start, t_end)) / (t_end -
//                                       t_start))^alpha)
//     linear:       1 - r              (QuantLab 2019's Linear timer)
//     cosine:       (1 + cos(pi r)) / 2
//     exponential:  (exp(-k r) - exp(-k)) / (1 - exp(-k))   (exp(-k r), shifted to reach 0)
//
//   exponents homogeneous: alpha_l = alpha
//             progressive: alpha_l = alpha * (L - l)   (CVPR'22: alpha_sigma = 2 (L - l))
//
// Every f is 1 at r = 0, 0 at r = 1 and non-increasing, so sigma_l(t) is non-increasing in t
// and 0 at the last epoch: the network is then the hard quantized network.
//
// The values depend only on (t, T, L): the schedule is static, so the trainer materializes
// and validates the whole table before training. A learned controller is a different
// Schedule (is_static() = false) behind the same interface.
#include <memory>
#include <string>
#include <vector>

#include "schedules/schedule.h"

namespace qsched::sched {

/// Parameters of the "ana_window" family (see the top of this file).
struct AnaWindowOptions {
  double sigma0 = 0.5;
  std::string shape = "power";            ///< power | linear | cosine | exponential
  double alpha = 1.0;                     ///< power: exponent
  double rate = 4.0;                      ///< exponential: k
  std::string layout = "sequential";      ///< sequential | same_start | same_end | overlapped |
                                          ///< progressive
  std::string exponents = "homogeneous";  ///< homogeneous | progressive
  int64_t start = 0;                      ///< first epoch of the first window
  int64_t end = -1;                       ///< last epoch of the last window (negative: T + end)
  double window = 0.0;                    ///< > 0: epochs per layer window (then "end" unused)

  /// Throws c10::ValueError "<what>.<key> = <value>. Violated constraint: <rule>".
  void validate(const std::string& what) const;
  /// Parses a spec strictly (unknown keys list the valid ones) and validates it.
  static AnaWindowOptions from_json(const json& spec, const std::string& what);
  json to_json() const;
};

/// The bounded-window family. values() throws c10::ValueError when the windows do not fit
/// into the run (a window ends after the last epoch T - 1, or starts after it ends).
class AnaWindowSchedule : public Schedule {
 public:
  AnaWindowSchedule(AnaWindowOptions o, std::string what);
  Quantity quantity() const override { return Quantity::kNoise; }
  std::vector<double> values(const ScheduleContext& ctx) override;
  json describe() const override;

  /// Layer l's window [s_l, e_l] for a run of T epochs and L layers.
  std::pair<double, double> window(int64_t l, int64_t T, int64_t L) const;
  /// Layer l's exponent alpha_l.
  double exponent(int64_t l, int64_t L) const;
  /// f(r) for layer l (see above), r in [0, 1].
  double shape(double r, int64_t l, int64_t L) const;

 private:
  AnaWindowOptions o_;
  std::string what_;
};

/// Families this file adds to make_schedule ("ana_window").
std::vector<std::string> ana_schedule_families();
/// Creates an ANA family from its spec (spec["family"] is one of ana_schedule_families()).
std::unique_ptr<Schedule> make_ana_schedule(const json& spec, const std::string& what);

}  // namespace qsched::sched
