#include "schedules/factory.h"

#include "schedules/registry.h"

namespace qsched::sched {

std::vector<std::string> schedule_families() { return registry().registered_names(); }

std::unique_ptr<Schedule> make_schedule(const json& spec, Quantity quantity,
                                        const std::string& what) {
  if (!(spec.is_object() && spec.contains("family") && spec["family"].is_string())) {
    std::string list;
    for (const auto& f : schedule_families()) list += (list.empty() ? "" : ", ") + f;
    TORCH_CHECK_VALUE(false, what, " must be an object with a string \"family\" (one of: ", list,
                      ")");
  }
  return registry().create(spec["family"].get<std::string>(), spec, quantity, what);
}

}  // namespace qsched::sched
