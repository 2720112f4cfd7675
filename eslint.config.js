import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.bkv/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-imports': 'off',
    },
  },
  {
    // hsm/ is the trusted core: no I/O, no ambient randomness or clock (DESIGN section 3).
    files: ['src/hsm/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { group: ['node:fs', 'node:fs/*', 'fs', 'node:net', 'node:http', 'node:child_process', 'node:os'], message: 'hsm/ does no I/O' },
          { group: ['../agent/*', '../storage/*', '../frontend/*', '../client/*', '../cli/*', '../softhsm/*', '../backup/*', '../validator/*', '../audit/*'], message: 'hsm/ imports only protocol/ and crypto/' },
        ],
      }],
      'no-restricted-properties': ['error',
        { object: 'Date', property: 'now', message: 'use the platform clock' },
        { object: 'Math', property: 'random', message: 'use the platform RNG' },
      ],
    },
  },
);
