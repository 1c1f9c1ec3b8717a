"""Sure2: the crop-emergence insurance engine, field by field (field-guide/sure2.md, SURE2-NOTES.md).

Stages (one ``plans/<stage>.py`` + ``jobs/<stage>.sbatch`` each) and the files they exchange, all under
``<work>/outputs/<stage>/`` unless OUT_DIR is given. This is the contract between the modules; change it
here first.

fields     GeoJSON FeatureCollection, EPSG:4326 polygons; properties ``field_id`` (str, unique),
           ``county`` (str), ``year`` (int). Given as FIELDS= on the make line.
weather    (login node / internet) raw files as delivered -- ERA5-Land monthly NetCDF4 from ``cdsapi``
           (``weather/raw/era5land_<YYYY>-<MM>.nc``, hourly swvl1, t2m [K], tp [m, accumulated from 00 UTC])
           and CHIRPS daily GeoTIFFs (``weather/raw/chirps-v2.0.<YYYY>.<MM>.<DD>.tif[.gz]``) -- then one
           normalised file a source a year, written atomically:
           ``weather/era5land_<YYYY>.npz``: dates (D,) datetime64[D]; lat (H,) descending; lon (W,)
           ascending; swvl1 (D,H,W) float32 m3/m3 daily mean; t2m (D,H,W) float32 degC daily mean;
           tmin, tmax (D,H,W) float32 degC; tp (D,H,W) float32 mm/day (de-accumulated).
           ``weather/chirps_<YYYY>.npz``: dates, lat (descending), lon, precip (D,H,W) float32 mm/day.
climatology  ``climatology/era5land_clim.npz``: lat, lon, years (Y,) int; swvl1_mean, swvl1_std,
           tp_mean (366,H,W) float32, index = day of year - 1 (a +-15 day window).
           ``climatology/chirps_clim.npz``: lat, lon, years; precip_mean, precip_std (366,H,W).
planting   ``planting/<field_id>.json``: field_id, year, pass (bool), reason (str, "" when pass),
           planting_date, greenup_date (ISO dates or null), n_clear, max_gap_days, method.
emergence  ``emergence/<field_id>.json``: field_id, dap30_date, obs_date (the acquisition most pixels were
           judged on), obs_dates (every one used), not_emerged_share (0-1 or null), claim_eligible
           (share >= 0.30), n_pixels, reason.
drought    ``drought/<field_id>.json``: field_id, D (0-1 or null), gate (D > 0.5), soil_moisture_anomaly,
           rain_deficit, weights {source: weight}, sources_missing [..], warnings [..].
assess     ``assess/<field_id>.json``: schema "sure2.assessment/1" -- inputs and their dates, planting,
           emergence, drought, decision {code: claim | claim_no_drought | no_claim | not_assessable,
           reason}, warnings (fields in ``geohpc.sure2.assess``).
collect    ``collect/portfolio.parquet`` + ``.csv``, ``collect/summary_by_year.csv``,
           ``collect/summary_by_county.csv``, ``collect/report.html`` (+ PNG map and charts).

Items of planting/emergence/drought/assess are shards of the field list (``shard_0003_of_0040``): each
array task runs its fields (fields[i::n]) in a process pool (never threads: bug 3), skips a field whose
output is already a valid JSON, and writes one log line a field plus one summary per task.
"""
