// Grafana's own types of a dashboard (the npm package @grafana/schema), narrowed to the panel
// kinds redwatch generates. `generate_grafana_types.rs` appends each generated dashboard as an
// object literal with `satisfies RedwatchDashboard` and runs `tsc --strict --noEmit`: a literal
// (unlike an imported JSON module) gets TypeScript's excess property checks, so an unknown key
// fails as well as a wrong type or a missing required field.
import type { Dashboard, DataQuery, Panel, RowPanel } from '@grafana/schema';
import type * as Raw from '@grafana/schema/dist/esm/raw/dashboard/x/Dashboard_types.gen';
import type * as Heatmap from '@grafana/schema/dist/esm/raw/composable/heatmap/panelcfg/x/HeatmapPanelCfg_types.gen';
import type * as Table from '@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen';
import type * as Stat from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type * as TimeSeries from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';

// The types declare many fields as TypeScript string enums (e.g. `GraphDrawStyle.Line`), which only
// their own members satisfy; JSON holds their values ("line"). `Json<T>` turns every string enum
// into the union of its values, and leaves everything else as it is.
type Json<T> = T extends string
  ? `${T}`
  : T extends readonly (infer Item)[]
    ? Json<Item>[]
    : T extends object
      ? { [Key in keyof T]: Json<T[Key]> }
      : T;

// Grafana's `FieldConfig` allows any `custom` object (`Record<string, unknown>`); each panel kind
// declares its own, used here instead.
type FieldConfigOf<Custom> = Json<Omit<Raw.FieldConfigSource, 'defaults'>> & {
  defaults: Json<Omit<Raw.FieldConfig, 'custom'>> & { custom?: Json<Custom> };
};

// Grafana's `Panel` types `options` as any object and `targets` as any objects; the panel kinds'
// own `Options` replace the first. Queries are Grafana's `DataQuery` (`refId` and the common
// fields); the Prometheus fields (`expr`, `legendFormat`, `instant`, ...) are declared by the
// Prometheus plugin's package (@grafana/prometheus, which needs Grafana's whole frontend to
// type-check), not by @grafana/schema, so they stay unchecked here; generate_files.rs checks them.
type PanelOf<Kind extends string, Options, Custom> = Json<
  Omit<Panel, 'type' | 'options' | 'fieldConfig' | 'targets'>
> & {
  type: Kind;
  options: Json<Options>;
  fieldConfig: FieldConfigOf<Custom>;
  targets: Json<DataQuery & Record<string, unknown>>[];
};

// Every panel kind the generator writes; a new kind must be added here, with its types.
// The alert list is the exception: @grafana/schema publishes no options type for it (there is
// no composable/alertlist), so its options are any object here and generate_files.rs checks them.
type RedwatchPanel =
  | PanelOf<'timeseries', TimeSeries.Options, TimeSeries.FieldConfig>
  | PanelOf<'stat', Stat.Options, never>
  | PanelOf<'heatmap', Heatmap.Options, Heatmap.FieldConfig>
  | PanelOf<'table', Table.Options, Table.FieldConfig>
  | PanelOf<'alertlist', Record<string, unknown>, never>;

type RedwatchRow = Json<Omit<RowPanel, 'panels'>> & { type: 'row'; panels: RedwatchPanel[] };

export type RedwatchDashboard = Json<Omit<Dashboard, 'panels'>> & {
  panels: (RedwatchPanel | RedwatchRow)[];
};
