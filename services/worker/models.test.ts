import { describe, expect, it } from 'vitest';
import { inputProblem, loadModelTable, parseModelTable } from './models.js';

const upscaler = () => loadModelTable().get('wavespeed-ai/image-upscaler')!;

describe('model table', () => {
  it('ships a default table with the image upscaler, its credit price and expected upstream cost', () => {
    const m = upscaler();
    expect(m).toMatchObject({ id: 'wavespeed-ai/image-upscaler', currency: 'USD' });
    expect(typeof m.creditsPrice).toBe('bigint');
    expect(m.creditsPrice).toBeGreaterThan(0n);
    expect(m.upstreamCostMicros).toBe(10_000n);
    expect(Object.keys(m.input)).toEqual(expect.arrayContaining(['image', 'target_resolution']));
  });

  it('refuses bad tables with the file and the field named', () => {
    const bad = (models: unknown) => () => parseModelTable(JSON.stringify({ models }), 'm.json');
    const base = { id: 'a/b', creditsPrice: 1, upstreamCostMicros: 0, input: { image: { type: 'url', required: true } } };
    expect(bad([{ ...base, creditsPrice: 0 }])).toThrow(/m\.json.*\n.*models\.0\.creditsPrice/);
    expect(bad([{ ...base, creditsPrice: 1.5 }])).toThrow(/creditsPrice/);
    expect(bad([{ ...base, upstreamCostMicros: -1 }])).toThrow(/upstreamCostMicros/);
    expect(bad([{ ...base, id: 'no-owner' }])).toThrow(/models\.0\.id/);
    expect(bad([{ ...base, currency: 'usd' }])).toThrow(/currency/);
    expect(bad([base, base])).toThrow(/unique/);
    expect(bad([])).toThrow(/models/);
    expect(() => parseModelTable('{', 'm.json')).toThrow(/m\.json: not valid JSON/);
  });

  it('checks a job input against the model: required, URL, enum, unknown fields, NUL', () => {
    const m = upscaler();
    expect(inputProblem(m, { image: 'https://x.example/a.png', target_resolution: '4k' })).toBeNull();
    expect(inputProblem(m, { image: 'https://x.example/a.png' })).toBeNull();
    expect(inputProblem(m, {})).toBe('input.image: required');
    expect(inputProblem(m, { image: 'javascript:alert(1)' })).toMatch(/input\.image/);
    expect(inputProblem(m, { image: 'https://x.example/\u0000' })).toMatch(/input\.image/);
    expect(inputProblem(m, { image: 42 })).toMatch(/input\.image/);
    expect(inputProblem(m, { image: 'https://x.example/a.png', target_resolution: '3k' })).toMatch(/input\.target_resolution/);
    expect(inputProblem(m, { image: 'https://x.example/a.png', seed: 1 })).toMatch(/input\.seed: not an input/);
  });
});
