// Checks a value the gateway sent against a schema of OpenAI's published spec (its JSON form, as a
// client would parse it), with the value's start in the failure message. Without the spec file
// outside CI nothing is checked (specForTests says so once).
import { expect } from 'vitest';
import { specForTests } from '../../src/providers/__fixtures__/openai-spec.js';

export function specChecker(testName: string): (schemaName: string, value: unknown) => void {
  const spec = specForTests(testName);
  return (schemaName, value) => {
    if (spec) expect(spec.errors(schemaName, JSON.parse(JSON.stringify(value))), `${schemaName}: ${JSON.stringify(value).slice(0, 300)}`).toEqual([]);
  };
}
