/** A model picker: each model by id, marked when no replica of it is live. */
export function ModelSelect({ models, value, onChange, ...rest }) {
  return (
    <select {...rest} value={value} onChange={(e) => onChange(e.target.value)}>
      {models.map((m) => (
        <option value={m.id}>
          {m.id}
          {m.live ? "" : " (not live)"}
        </option>
      ))}
    </select>
  );
}
