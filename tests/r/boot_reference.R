# Writes the reference values for tests/test_costs_reference.py (which never calls R) into tests/data/costs/.
#
# Run from the repository root (the outputs are committed; re-run only to change them):
#     Rscript tests/r/boot_reference.R
# Needs the boot package (Debian: r-cran-boot; it ships with R as a recommended package) and jsonlite.
# Written and run with R 4.2.2 Patched (2022-11-10 r83330) and boot 1.3.28.1; the versions actually used are
# written into every output file (a leading "# ..." comment line in the CSVs, "meta" in reference.json).
#
# 1. A small simulated cost data set (set.seed below), boot_simple.csv: 40 participants in 8 teams, 4 teams per
#    arm (team sizes 3, 4, 5, 8 in arm 1 and 4, 5, 5, 6 in arm 0, so that stage 2 of the cluster bootstrap
#    changes the number of participants per arm), a baseline-period cost (gamma) and a follow-up cost (gamma noise
#    plus a team effect plus 0.6 x baseline cost), in pounds and pence. cost_na and baseline_na are copies of
#    cost and baseline_cost with a few values set to missing (NA in the CSV).
# 2. boot(d, stat, R = 999, strata = d$arm) and the same with R = 2000, where stat returns four statistics:
#      md      mean(cost | arm 1) - mean(cost | arm 0)
#      adj     coef(lm(cost ~ arm + baseline_cost))["arm"]
#      md_na   as md on cost_na (missing values left out: mean(na.rm = TRUE))
#      adj_na  as adj on cost_na and baseline_na (lm's default na.omit drops incomplete rows)
#    Written: boot.array(b) (frequency array, R x N) as boot_freq_R999.csv / boot_freq_R2000.csv; b$t as
#    boot_t_R999.csv / boot_t_R2000.csv (17 significant digits); b$t0 and boot.ci(b, conf, type = "perc")
#    endpoints for conf 0.95 and 0.9 (and 0.8) for every statistic into reference.json.
# 3. boot's percentile rule (boot:::perc.ci, i.e. norm.inter) on a few short vectors: extreme order statistics,
#    interpolation, non-finite values dropped (reference.json "perc_cases").
# 4. A two-stage cluster bootstrap written here in R (teams with replacement within arm, then participants with
#    replacement within each sampled team, as many as the team has), 20000 replicates: SD, mean and kurtosis of
#    the replicate mean differences (reference.json "two_stage").

suppressPackageStartupMessages({
  library(boot)
  library(jsonlite)
})

out_dir <- file.path("tests", "data", "costs")
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
versions <- list(R = R.version$version.string, boot = as.character(packageVersion("boot")),
                 jsonlite = as.character(packageVersion("jsonlite")), script = "tests/r/boot_reference.R")
header <- sprintf("# written by %s with %s, boot %s", versions$script, versions$R, versions$boot)
num17 <- function(x) ifelse(is.na(x), "NA", sprintf("%.17g", x))

write_lines_csv <- function(df, file, digits17 = character()) {
  for (v in digits17) df[[v]] <- num17(df[[v]])
  con <- file(file.path(out_dir, file), "w")
  writeLines(header, con)
  write.csv(df, con, row.names = FALSE, quote = FALSE)
  close(con)
}

# ---- 1. data ----
set.seed(20240611)
sizes <- c(3, 4, 5, 8, 4, 5, 5, 6)
team_arm <- c(1, 1, 1, 1, 0, 0, 0, 0)
team <- rep(seq_along(sizes), sizes)
arm <- team_arm[team]
n <- length(team)
team_effect <- rnorm(length(sizes), 0, 150)
baseline_cost <- round(rgamma(n, shape = 1.5, scale = 400), 2)
cost <- round(0.6 * baseline_cost + rgamma(n, shape = 1.2, scale = 500) + 200 * arm + team_effect[team] + 150, 2)
cost <- pmax(cost, 0)
cost_na <- cost
cost_na[c(2, 11, 27)] <- NA
baseline_na <- baseline_cost
baseline_na[c(5, 33)] <- NA
d <- data.frame(participant_id = sprintf("P%02d", seq_len(n)), team = sprintf("T%d", team), arm = arm,
                cost = cost, baseline_cost = baseline_cost, cost_na = cost_na, baseline_na = baseline_na)
write_lines_csv(d, "boot_simple.csv")

# ---- 2. stratified ordinary bootstrap with boot ----
stat <- function(data, i) {
  s <- data[i, ]
  md <- function(y) mean(y[s$arm == 1], na.rm = TRUE) - mean(y[s$arm == 0], na.rm = TRUE)
  c(md = md(s$cost),
    adj = unname(coef(lm(cost ~ arm + baseline_cost, data = s))["arm"]),
    md_na = md(s$cost_na),
    adj_na = unname(coef(lm(cost_na ~ arm + baseline_na, data = s))["arm"]))
}
stat_names <- c("md", "adj", "md_na", "adj_na")
confs <- c(0.95, 0.9, 0.8)

run_boot <- function(R, seed) {
  set.seed(seed)
  b <- boot(d, stat, R = R, strata = d$arm)
  f <- boot.array(b)
  stopifnot(all(dim(f) == c(R, n)))
  colnames(f) <- d$participant_id
  write_lines_csv(as.data.frame(f), sprintf("boot_freq_R%d.csv", R))
  tt <- as.data.frame(b$t)
  names(tt) <- stat_names
  write_lines_csv(tt, sprintf("boot_t_R%d.csv", R), digits17 = stat_names)
  ci <- list()
  for (k in seq_along(stat_names)) {
    ci[[stat_names[k]]] <- list()
    for (cf in confs) {
      p <- boot.ci(b, conf = cf, type = "perc", index = k)$percent
      alpha <- (1 + c(-cf, cf)) / 2
      rk <- (R + 1) * alpha
      ci[[stat_names[k]]][[sprintf("%g", cf)]] <- list(
        lower = num17(p[1, 4]), upper = num17(p[1, 5]), rk = num17(rk), rk_integer = trunc(rk) == rk)
    }
  }
  list(R = R, seed = seed, t0 = as.list(setNames(num17(b$t0), stat_names)), perc = ci,
       sd = as.list(setNames(num17(apply(b$t, 2, sd)), stat_names)))
}
ref_boot <- list(R999 = run_boot(999, 1999), R2000 = run_boot(2000, 2000))

# ---- 3. boot's percentile rule on short vectors ----
set.seed(7)
base19 <- round(rnorm(19, 10, 3), 3)
base40 <- round(rexp(40, 0.1), 3)
cases <- list(
  list(name = "R19_conf95_extreme", t = base19, conf = 0.95),   # rk = 0.5, 19.5: min and max
  list(name = "R19_conf90_integer", t = base19, conf = 0.9),    # rk = 1, 19
  list(name = "R19_conf80_interp", t = base19, conf = 0.8),     # rk = 2, 18 up to rounding of (1 - conf) / 2
  list(name = "R40_conf95_interp", t = base40, conf = 0.95),    # rk = 1.025, 39.975
  list(name = "R40_conf50_interp", t = base40, conf = 0.5),     # rk = 10.25, 30.75
  list(name = "R40_nonfinite_dropped", t = c(base40[1:20], Inf, NaN, -Inf, NA, base40[21:40]), conf = 0.9))
perc_cases <- lapply(cases, function(cs) {
  p <- suppressWarnings(boot:::perc.ci(cs$t, conf = cs$conf))
  list(name = cs$name, conf = cs$conf, t = num17(cs$t), lower = num17(p[1, 4]), upper = num17(p[1, 5]))
})

# ---- 4. two-stage cluster bootstrap in R ----
two_stage_md <- function(B, seed) {
  set.seed(seed)
  members <- split(seq_len(n), team)
  teams_by_arm <- split(seq_along(sizes), team_arm)
  out <- numeric(B)
  for (r in seq_len(B)) {
    m <- numeric(2)
    for (a in c("0", "1")) {
      tms <- teams_by_arm[[a]]
      drawn <- tms[sample.int(length(tms), length(tms), replace = TRUE)]
      idx <- unlist(lapply(drawn, function(g) {
        mem <- members[[g]]
        mem[sample.int(length(mem), length(mem), replace = TRUE)]
      }))
      m[as.integer(a) + 1] <- mean(cost[idx])
    }
    out[r] <- m[2] - m[1]
  }
  out
}
B2 <- 20000
ts <- two_stage_md(B2, 4242)
kurt <- mean((ts - mean(ts))^4) / mean((ts - mean(ts))^2)^2
two_stage <- list(replicates = B2, seed = 4242, statistic = "md", sd = num17(sd(ts)), mean = num17(mean(ts)),
                  kurtosis = num17(kurt),
                  sd_mc_se = num17(sd(ts) * sqrt((kurt - 1) / (4 * B2))))

ref <- list(meta = versions, n = n, team_sizes = sizes, team_arm = team_arm,
            data_seed = 20240611, boot = ref_boot, perc_cases = perc_cases, two_stage = two_stage)
writeLines(toJSON(ref, auto_unbox = TRUE, pretty = TRUE, digits = NA), file.path(out_dir, "reference.json"))
cat("wrote", out_dir, "\n")
